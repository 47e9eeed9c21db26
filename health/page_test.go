package health_test

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloister-go/cloister/cloistertest"
	"github.com/cloister-go/cloister/health"
	"github.com/cloister-go/cloister/internal/httpserve"
	"github.com/cloister-go/cloister/internal/localcluster"
	"github.com/cloister-go/cloister/listener"
)

func TestPageServed(t *testing.T) {
	s, err := httpserve.Start("127.0.0.1:0", health.Handler(func() listener.Snapshot { return listener.Snapshot{State: "ready"} }))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	do := func(method, path string) (int, string, string) {
		req, _ := http.NewRequest(method, "http://"+s.Addr()+path, nil)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode, r.Header.Get("Content-Type"), string(b)
	}
	if code, ct, body := do("GET", "/"); code != 200 || !strings.HasPrefix(ct, "text/html") || !strings.Contains(body, `<script src="/ui/app.js">`) {
		t.Fatalf("GET /: %d %q %.200q", code, ct, body)
	}
	for path, want := range map[string]string{"/ui/app.js": "javascript", "/ui/style.css": "text/css"} {
		if code, ct, body := do("GET", path); code != 200 || !strings.Contains(ct, want) || len(body) < 100 {
			t.Fatalf("GET %s: %d %q (%d bytes)", path, code, ct, len(body))
		}
	}
	for _, path := range []string{"/nope", "/ui/", "/ui/missing.js", "/index.html/x"} {
		if code, _, _ := do("GET", path); code != 404 {
			t.Errorf("GET %s: %d, want 404", path, code)
		}
	}
	if code, _, _ := do("POST", "/"); code != 405 {
		t.Errorf("POST /: %d, want 405", code)
	}
	// The endpoints that were there before the page still answer.
	if code, _, _ := do("GET", "/healthz"); code != 200 {
		t.Errorf("healthz: %d", code)
	}
}

// chromium returns the path of Debian's chromium, or skips the test saying
// how to install it.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("SKIPPED: chromium is not installed, so the operator's page was not tested in a browser " +
		"(Debian: apt-get install -y chromium)")
	return ""
}

// browser runs headless chromium on the page of one node.
type browser struct {
	t   *testing.T
	bin string
	dir string
}

func (b browser) run(args ...string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	profile, err := os.MkdirTemp(b.dir, "profile-")
	if err != nil {
		b.t.Fatal(err)
	}
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--user-data-dir=" + profile, "--virtual-time-budget=5000"}
	cmd := exec.CommandContext(ctx, b.bin, append(base, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.t.Fatalf("chromium %v: %v\n%s", args, err, localcluster.LastLines(stderr.String(), 20))
	}
	return string(out)
}

// dom loads the page and returns the DOM once the script has rendered a
// /status answer (body data-loaded), retrying a few times on a busy machine.
func (b browser) dom(addr string) string {
	b.t.Helper()
	var d string
	for range 5 {
		d = b.run("--dump-dom", "http://"+addr+"/")
		if strings.Contains(d, `data-loaded="1"`) {
			return d
		}
		time.Sleep(time.Second)
	}
	b.t.Fatalf("the page of %s never rendered /status:\n%.2000s", addr, d)
	return ""
}

func (b browser) screenshot(addr, name string) string {
	b.t.Helper()
	path := filepath.Join(b.dir, name)
	b.run("--screenshot="+path, "--window-size=1280,620", "--hide-scrollbars", "http://"+addr+"/")
	if st, err := os.Stat(path); err != nil || st.Size() < 1000 {
		b.t.Fatalf("screenshot %s: %v", path, err)
	}
	return path
}

// page is what the rendered DOM shows.
type page struct {
	state       string
	node        string
	members     map[string]string // name → data-status
	roles       map[string]string // name → data-roles (comma-separated)
	meta        map[string]string // name → data-meta (k=v, sorted, comma-separated)
	rings       map[string]ringView
	transitions [][2]string // newest first
}

type ringView struct {
	epoch, hash string
	shares      map[string]float64
}

var (
	tagRe  = regexp.MustCompile(`<(\w+)\s([^>]*)>`)
	attrRe = regexp.MustCompile(`([\w-]+)="([^"]*)"`)
	nodeRe = regexp.MustCompile(`<span id="node" class="node">([^<]*)</span>`)
)

func attrs(s string) map[string]string {
	m := map[string]string{}
	for _, a := range attrRe.FindAllStringSubmatch(s, -1) {
		m[a[1]] = strings.NewReplacer("&amp;", "&", "&lt;", "<", "&gt;", ">", "&quot;", `"`).Replace(a[2])
	}
	return m
}

// parsePage reads the elements app.js renders, in document order (a share
// belongs to the ring before it).
func parsePage(t *testing.T, dom string) page {
	p := page{members: map[string]string{}, roles: map[string]string{}, meta: map[string]string{}, rings: map[string]ringView{}}
	if m := nodeRe.FindStringSubmatch(dom); m != nil {
		p.node = m[1]
	}
	var ring string
	for _, m := range tagRe.FindAllStringSubmatch(dom, -1) {
		a := attrs(m[2])
		switch {
		case a["id"] == "state":
			p.state = a["data-state"]
		case a["class"] == "member":
			p.members[a["data-name"]] = a["data-status"]
			p.roles[a["data-name"]], p.meta[a["data-name"]] = a["data-roles"], a["data-meta"]
		case a["class"] == "ring":
			ring = a["data-ring"]
			p.rings[ring] = ringView{epoch: a["data-epoch"], hash: a["data-hash"], shares: map[string]float64{}}
		case a["class"] == "share":
			f, err := strconv.ParseFloat(a["data-share"], 64)
			if err != nil {
				t.Fatalf("share of %s in ring %s: %q", a["data-member"], ring, a["data-share"])
			}
			p.rings[ring].shares[a["data-member"]] = f
		case a["class"] == "transition":
			p.transitions = append(p.transitions, [2]string{a["data-from"], a["data-to"]})
		}
	}
	return p
}

// checkPage asserts that the page shows what the node's /status says: its
// name and state, every member with its status, each ring's epoch, hash
// (as 16 hex digits) and shares, and the transitions.
func checkPage(t *testing.T, n *cloistertest.Node, p page, st listener.Snapshot) {
	t.Helper()
	if p.node != n.Name || p.state != string(st.State) {
		t.Fatalf("%s page: node %q state %q, /status says %q", n.Name, p.node, p.state, st.State)
	}
	want := map[string]string{}
	for _, m := range st.Members {
		switch {
		case m == n.Name:
			want[m] = "self"
		case slices.Contains(st.Suspects, m):
			want[m] = "suspect"
		case slices.Contains(st.Connected, m):
			want[m] = "connected"
		default:
			want[m] = "unconnected"
		}
	}
	if fmt.Sprint(p.members) != fmt.Sprint(want) {
		t.Fatalf("%s page members %v, /status implies %v", n.Name, p.members, want)
	}
	// Each member's roles and metadata, as /status has them.
	for _, m := range st.Members {
		var meta []string
		for k, v := range st.Meta[m] {
			meta = append(meta, k+"="+v)
		}
		slices.Sort(meta)
		if p.roles[m] != strings.Join(st.Roles[m], ",") || p.meta[m] != strings.Join(meta, ",") {
			t.Fatalf("%s page: %s roles %q meta %q, /status %v %v", n.Name, m, p.roles[m], p.meta[m], st.Roles[m], st.Meta[m])
		}
	}
	if len(p.rings) != len(st.Rings) {
		t.Fatalf("%s page rings %v, /status %v", n.Name, p.rings, st.Rings)
	}
	for name, r := range st.Rings {
		v, ok := p.rings[name]
		if !ok || v.epoch != strconv.FormatUint(r.Epoch, 10) || v.hash != fmt.Sprintf("%016x", r.Hash) {
			t.Fatalf("%s page ring %s: %+v, /status epoch %d hash %016x", n.Name, name, v, r.Epoch, r.Hash)
		}
		sum := 0.0
		for m, f := range v.shares {
			if !slices.Contains(r.Members, m) || math.Abs(f-r.Shares[m]) > 0.00006 {
				t.Fatalf("%s page ring %s share of %s %.4f, /status %.4f", n.Name, name, m, f, r.Shares[m])
			}
			sum += f
		}
		if len(v.shares) != len(r.Members) || math.Abs(sum-1) > 0.001 {
			t.Fatalf("%s page ring %s shares %v add up to %.4f for %d members", n.Name, name, v.shares, sum, len(r.Members))
		}
	}
	var wantT [][2]string
	for i := len(st.Transitions) - 1; i >= 0; i-- {
		wantT = append(wantT, [2]string{string(st.Transitions[i].From), string(st.Transitions[i].To)})
	}
	if !slices.Equal(p.transitions, wantT) {
		t.Fatalf("%s page transitions %v, /status %v", n.Name, p.transitions, wantT)
	}
}

// TestOperatorPageInBrowser loads the page of each node of a 3-node cluster
// (node processes) in headless chromium and reads the rendered DOM: every
// node shows itself ready, the three members (itself as "this node", the
// others connected) with their roles (two workers, an api node) and
// metadata, its ring with the same hash on every node and three
// shares adding up to 100%, and its transitions down → assembling →
// rehashing → ready. After kill -9 of one node, the survivors' pages show
// two members, ready again, a new ring hash (the same on both) and the
// ready → rehashing → ready of the removal. A survivor frozen with SIGSTOP
// shows as suspected on the other's page, and as connected again once
// thawed. Screenshots (before and after the kill, with a suspect) are kept
// in the test's temporary directory, or in $CLOISTER_PAGE_ARTIFACTS (paths
// logged).
func TestOperatorPageInBrowser(t *testing.T) {
	bin := chromium(t)
	dir := t.TempDir()
	if keep := os.Getenv("CLOISTER_PAGE_ARTIFACTS"); keep != "" {
		dir = keep // keep the screenshots beyond the test
	}
	b := browser{t: t, bin: bin, dir: dir}
	h := cloistertest.NewT(t)
	const wait = 60 * time.Second
	ns := localcluster.Names("page", 3)
	var nodes []*cloistertest.Node
	for i, name := range ns {
		// Consensus 2: the two survivors of the kill are a cluster again.
		// Suspected after 1 s of silence, removed after 60 s: a frozen
		// node stays suspected long enough to be seen (a killed one is
		// removed at once, its connection dropping).
		// Two workers and an api node: each row shows the member's roles.
		role := "worker"
		if i == 2 {
			role = "api"
		}
		n, err := h.Start(cloistertest.Spec{Name: name, Sentry: ns, Consensus: 2,
			Args: []string{"-heartbeat", "200ms", "-suspect-after", "1s", "-remove-after", "60s",
				"-roles", role, "-meta", fmt.Sprintf("index=%d", i)}})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	ready := func(n *cloistertest.Node, members int) listener.Snapshot {
		t.Helper()
		st, err := n.WaitStatus(wait, fmt.Sprintf("ready with %d members", members), func(s listener.Snapshot) bool {
			return s.Ready() && len(s.Members) == members && len(s.Connected) == members-1
		})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	var hashes []string
	for _, n := range nodes {
		ready(n, 3)
	}
	for _, n := range nodes {
		p := parsePage(t, b.dom(n.HTTPAddr()))
		st, err := n.Status() // after the page: what it shows was true then, and still is in a settled cluster
		if err != nil {
			t.Fatal(err)
		}
		checkPage(t, n, p, st)
		if len(p.members) != 3 || p.state != "ready" {
			t.Fatalf("%s page: %+v", n.Name, p)
		}
		if p.roles[ns[0]] != "worker" || p.roles[ns[1]] != "worker" || p.roles[ns[2]] != "api" || p.meta[ns[2]] != "index=2" {
			t.Fatalf("%s page roles %v meta %v: want worker, worker, api", n.Name, p.roles, p.meta)
		}
		// Newest first: the start from down, ending in ready.
		if got := p.transitions; len(got) < 3 || got[len(got)-1] != [2]string{"down", "assembling"} || got[0] != [2]string{"rehashing", "ready"} {
			t.Fatalf("%s page transitions %v: want down → assembling first and rehashing → ready last", n.Name, got)
		}
		for _, r := range p.rings {
			hashes = append(hashes, r.hash)
		}
	}
	if len(hashes) != 3 || len(slices.Compact(slices.Clone(hashes))) != 1 {
		t.Fatalf("ring hashes on the three pages differ: %v", hashes)
	}
	t.Logf("screenshot before the kill: %s", b.screenshot(nodes[1].HTTPAddr(), "before-kill.png"))

	nodes[0].Kill()
	for _, n := range nodes[1:] {
		_, err := n.WaitStatus(wait, "ready without the killed node", func(s listener.Snapshot) bool {
			return s.Ready() && len(s.Members) == 2 && !slices.Contains(s.Members, ns[0])
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var after []string
	for _, n := range nodes[1:] {
		p := parsePage(t, b.dom(n.HTTPAddr()))
		st, err := n.Status()
		if err != nil {
			t.Fatal(err)
		}
		checkPage(t, n, p, st)
		if _, ok := p.members[ns[0]]; ok || len(p.members) != 2 || p.state != "ready" {
			t.Fatalf("%s page after the kill: members %v state %s", n.Name, p.members, p.state)
		}
		// The newest transitions: back to ready after the removal's rehash.
		if len(p.transitions) < 5 || p.transitions[0] != [2]string{"rehashing", "ready"} || p.transitions[1] != [2]string{"ready", "rehashing"} {
			t.Fatalf("%s page transitions after the kill: %v", n.Name, p.transitions)
		}
		for _, r := range p.rings {
			after = append(after, r.hash)
			if len(r.shares) != 2 {
				t.Fatalf("%s page: ring shares %v after the kill", n.Name, r.shares)
			}
		}
	}
	if after[0] != after[1] || after[0] == hashes[0] {
		t.Fatalf("ring hashes after the kill %v (before %s): want one new hash", after, hashes[0])
	}
	t.Logf("screenshot after the kill: %s", b.screenshot(nodes[1].HTTPAddr(), "after-kill.png"))

	// A frozen member is suspected, not removed: its row says so.
	if err := nodes[2].Freeze(); err != nil {
		t.Fatal(err)
	}
	thawed := false
	defer func() {
		if !thawed {
			_ = nodes[2].Thaw()
		}
	}()
	if _, err := nodes[1].WaitStatus(wait, "the frozen node suspected", func(s listener.Snapshot) bool {
		return slices.Contains(s.Suspects, ns[2])
	}); err != nil {
		t.Fatal(err)
	}
	p := parsePage(t, b.dom(nodes[1].HTTPAddr()))
	st, err := nodes[1].Status()
	if err != nil {
		t.Fatal(err)
	}
	checkPage(t, nodes[1], p, st)
	if p.members[ns[2]] != "suspect" || len(p.members) != 2 {
		t.Fatalf("%s page with %s frozen: members %v", ns[1], ns[2], p.members)
	}
	t.Logf("screenshot with a suspect: %s", b.screenshot(nodes[1].HTTPAddr(), "suspect.png"))
	if err := nodes[2].Thaw(); err != nil {
		t.Fatal(err)
	}
	thawed = true
	if _, err := nodes[1].WaitStatus(wait, "no suspects after the thaw", func(s listener.Snapshot) bool {
		return len(s.Suspects) == 0 && len(s.Members) == 2
	}); err != nil {
		t.Fatal(err)
	}
	if p := parsePage(t, b.dom(nodes[1].HTTPAddr())); p.members[ns[2]] != "connected" {
		t.Fatalf("%s page after the thaw: members %v", ns[1], p.members)
	}
}
