// The operator's page: polls /status and renders it. No dependencies; every
// value from the node goes into the page as text, never as markup.
"use strict";

const POLL_MS = 1000;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, String(v));
    else e[k] = v;
  }
  for (const c of children) e.append(c);
  return e;
}

// A ring hash is 64 bits: as a JSON number it does not survive JSON.parse,
// so numbers are turned into decimal strings first. A string is already
// the 16 hex digits newer nodes send.
function parseStatus(text) {
  return JSON.parse(text.replace(/("hash"\s*:\s*)(\d+)/g, '$1"d$2"'));
}

function hashHex(h) {
  if (typeof h === "string" && h.startsWith("d")) return BigInt(h.slice(1)).toString(16).padStart(16, "0");
  return String(h);
}

function fmtTime(iso) {
  const d = new Date(iso);
  if (isNaN(d)) return String(iso);
  return d.toISOString().replace("T", " ").replace("Z", "");
}

function renderMembers(s) {
  const body = document.querySelector("#members tbody");
  const connected = new Set(s.connected || []);
  const suspects = new Set(s.suspects || []);
  const rows = (s.members || []).map((m) => {
    let status = "connected", label = "connected";
    if (m === s.node) { status = "self"; label = "this node"; }
    else if (suspects.has(m)) { status = "suspect"; label = "suspected"; }
    else if (!connected.has(m)) { status = "unconnected"; label = "not connected"; }
    const roles = (s.roles && s.roles[m]) || [];
    const meta = Object.entries((s.meta && s.meta[m]) || {}).sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([k, v]) => `${k}=${v}`);
    return el("tr", { class: "member", "data-name": m, "data-status": status, "data-roles": roles.join(","), "data-meta": meta.join(",") },
      el("td", {}, m), el("td", {}, el("span", { class: "badge " + status }, label)),
      el("td", {}, ...roles.map((r) => el("span", { class: "role" }, r)), ...(meta.length ? [el("span", { class: "muted" }, " " + meta.join(" "))] : [])));
  });
  // Suspects that are no longer members are still worth a row.
  for (const m of suspects) {
    if (!(s.members || []).includes(m)) {
      rows.push(el("tr", { class: "member", "data-name": m, "data-status": "suspect" },
        el("td", {}, m), el("td", {}, el("span", { class: "badge suspect" }, "suspected")), el("td", {})));
    }
  }
  if (rows.length === 0) rows.push(el("tr", {}, el("td", { class: "empty", colSpan: 3 }, "no members")));
  body.replaceChildren(...rows);
  document.getElementById("member-count").textContent = String((s.members || []).length);
}

function renderRings(s) {
  const box = document.getElementById("rings");
  const names = Object.keys(s.rings || {}).sort();
  const out = names.map((name) => {
    const r = s.rings[name];
    const shares = r.shares || {};
    const members = (r.members || []).slice().sort();
    const bars = members.map((m) => {
      const f = shares[m];
      const pct = typeof f === "number" ? (f * 100).toFixed(1) + "%" : "–";
      return el("div", { class: "share", "data-member": m, "data-share": typeof f === "number" ? f.toFixed(4) : "" },
        el("span", { class: "who", title: m }, m),
        el("div", { class: "track", title: "the mark is an even share" },
          el("div", { class: "fill", style: `width:${typeof f === "number" ? (f * 100).toFixed(2) : 0}%` }),
          el("div", { class: "even", style: `left:${(100 / members.length).toFixed(2)}%` })),
        el("span", { class: "pct" }, pct));
    });
    const hash = hashHex(r.hash);
    return el("div", { class: "ring", "data-ring": name, "data-epoch": r.epoch, "data-hash": hash },
      el("div", { class: "ring-head" },
        el("span", { class: "ring-name" }, name),
        el("span", { class: "ring-meta" }, `epoch ${r.epoch} · hash ${hash}`)),
      ...(bars.length ? bars : [el("div", { class: "empty" }, "no members")]));
  });
  if (out.length === 0) out.push(el("div", { class: "empty" }, "no rings"));
  box.replaceChildren(...out);
}

function renderTransitions(s) {
  const list = document.getElementById("transitions");
  const ts = (s.transitions || []).slice().reverse(); // newest first
  const items = ts.map((t) =>
    el("li", { class: "transition", "data-from": t.from, "data-to": t.to },
      el("time", { dateTime: t.at }, fmtTime(t.at)),
      el("span", {}, `${t.from} → `, el("span", { class: "to" }, t.to))));
  if (items.length === 0) items.push(el("li", { class: "empty" }, "none yet"));
  list.replaceChildren(...items);
}

function render(s) {
  document.getElementById("node").textContent = s.node || "(not started)";
  document.title = `cloister · ${s.node || ""} · ${s.state}`;
  const st = document.getElementById("state");
  st.textContent = s.state;
  st.dataset.state = s.state;
  document.getElementById("quorum").textContent = `${(s.members || []).length} members · consensus ${s.consensus}`;
  document.getElementById("updated").textContent = s.at ? "as of " + fmtTime(s.at) + " UTC" : "";
  renderMembers(s);
  renderRings(s);
  renderTransitions(s);
}

async function poll() {
  const conn = document.getElementById("conn");
  try {
    const r = await fetch("/status", { cache: "no-store" });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    render(parseStatus(await r.text()));
    conn.hidden = true;
    document.body.dataset.loaded = "1";
  } catch (e) {
    conn.textContent = `Cannot reach this node's /status: ${e.message}. Showing the last answer.`;
    conn.hidden = false;
  }
  setTimeout(poll, POLL_MS);
}

poll();
