package interop

import (
	"errors"
	"fmt"
	"math/big"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ergo-services/ergo/etf"

	"github.com/cloister-go/cloister"
	"github.com/cloister-go/cloister/actors"
	"github.com/cloister-go/cloister/cloistertest"
	"github.com/cloister-go/cloister/internal/clusterstate"
	"github.com/cloister-go/cloister/internal/erltest"
	"github.com/cloister-go/cloister/internal/testenv"
	"github.com/cloister-go/cloister/listener"
	"github.com/cloister-go/cloister/ring/libring"
)

// keyCount is how many keys the owner checks compare.
const keyCount = 10000

// key is the i-th test key, as cloister_member:key/1 makes it: Go strings
// are Erlang binaries (ASCII, raw bytes, UTF-8).
func key(i int) string {
	switch i % 3 {
	case 0:
		return "key:" + strconv.Itoa(i)
	case 1:
		return string([]byte{byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)})
	}
	return "ключ-" + strconv.Itoa(i) + "-中"
}

func q(name string) string { return "'" + name + "'" }

func erlList(names []string) string {
	qs := make([]string, len(names))
	for i, n := range names {
		qs[i] = q(n)
	}
	return "[" + strings.Join(qs, ",") + "]"
}

func evalT(t testing.TB, n *erltest.Node, expr string) string {
	t.Helper()
	v, err := n.Eval(expr)
	if err != nil {
		t.Fatalf("%s: %v", n.Name, err)
	}
	return v
}

func evalTerm(t testing.TB, n *erltest.Node, expr string) any {
	t.Helper()
	return mustParse(t, evalT(t, n, expr))
}

func expectEval(t testing.TB, n *erltest.Node, expr, want string) {
	t.Helper()
	if got := evalT(t, n, expr); got != want {
		t.Fatalf("%s: %s\n got %s\nwant %s", n.Name, expr, got, want)
	}
}

func atomsOf(v any) []string {
	l, _ := v.(List)
	var out []string
	for _, x := range l {
		if a, ok := x.(Atom); ok {
			out = append(out, string(a))
		}
	}
	return out
}

// row is one mixed cluster: 3 Go nodes and 2 BEAM nodes of one OTP release.
type row struct {
	rel        string
	r          erltest.Runtime
	dir        string
	erlA, erlB *erltest.Node
	go1, go2   *cloistertest.Node
	beam       []*erltest.Node // BEAM members now running
	goNames    []string        // goIn, go1, go2
	// viewMu guards go1, go2 and beam while a sampler reads them
	viewMu sync.Mutex
}

// member starts cloister_member on a BEAM node.
func member(t *testing.T, n *erltest.Node, sentries []string) {
	t.Helper()
	expectEval(t, n, fmt.Sprintf(`{ok, _} = cloister_member:start(<<"%s">>, %s, #{consensus => 5%s}), ok`,
		otpApp, erlList(sentries), beamTickOpts()), "ok")
}

// beamTickOpts: with CLOISTER_INTEROP_BEAM_TICK=ms the BEAM members
// assemble as the original does, on that tick only (lazy), for measuring
// the owner-disagreement windows with the original's 5 s tick.
func beamTickOpts() string {
	if v := os.Getenv("CLOISTER_INTEROP_BEAM_TICK"); v != "" {
		if ms, err := strconv.Atoi(v); err == nil && ms > 0 {
			return fmt.Sprintf(", tick => %d, lazy => true, silence => %d", ms, 3*ms)
		}
	}
	return ""
}

// goRing is a Go node's default-ring members (sorted) and state.
func goRing(s listener.Snapshot) []string { return s.Rings[otpApp].Members }

// views returns every member's view of the ring: node -> members.
func (w *row) views(t *testing.T) map[string][]string {
	t.Helper()
	v := map[string][]string{goIn: goRing(cloister.State())}
	for _, g := range []*cloistertest.Node{w.go1, w.go2} {
		s, err := g.Status()
		if err == nil {
			v[g.Name] = goRing(s)
		}
	}
	for _, e := range w.beam {
		if out, err := e.Eval("cloister_member:members()"); err == nil {
			if p, err := parseTerm(out); err == nil {
				v[e.Name] = atomsOf(p)
			}
		}
	}
	return v
}

// converge waits until every member's ring is want (and the Go nodes are
// ready when want has 5 or more); it returns how long that took.
func (w *row) converge(t *testing.T, want []string, d time.Duration) time.Duration {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	start := time.Now()
	var last map[string][]string
	ok := testenv.Poll(d, func() bool {
		last = w.views(t)
		if len(last) != 3+len(w.beam) {
			return false
		}
		for _, m := range last {
			if !slices.Equal(m, want) {
				return false
			}
		}
		if len(want) >= 5 && !cloister.State().Ready() {
			return false
		}
		return true
	})
	if !ok {
		t.Fatalf("rings did not converge on %v within %s: %v", want, d, last)
	}
	return time.Since(start)
}

func TestMixedCluster(t *testing.T) {
	for _, rel := range columns {
		t.Run("OTP"+rel, func(t *testing.T) {
			r, ok := runtimes[rel]
			if !ok {
				t.Skipf("SKIPPED: OTP %s rows: %s", rel, missing[rel])
			}
			dumpLogsOnFailure(t)
			mixedRow(t, rel, r)
		})
	}
}

func mixedRow(t *testing.T, rel string, r erltest.Runtime) {
	w := &row{rel: rel, r: r, dir: beamDir(t, r)}
	// Two BEAM members, started together; B's only sentry is A.
	setup := time.Now()
	var wg sync.WaitGroup
	var errA, errB error
	var erlA *erltest.Node
	wg.Add(1)
	go func() {
		defer wg.Done()
		erlA, errA = env.StartNode("erla", erltest.NodeOptions{Runtime: r, Paths: []string{w.dir}})
	}()
	erlB, errB := env.StartNode("erlb", erltest.NodeOptions{Runtime: r, Paths: []string{w.dir}})
	wg.Wait()
	if err := errors.Join(errA, errB); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(erlA.Stop)
	t.Cleanup(erlB.Stop)
	w.erlA, w.erlB = erlA, erlB
	member(t, erlA, nil)
	member(t, erlB, []string{erlA.Name})
	w.beam = []*erltest.Node{erlA, erlB}
	forming := w.startSampler(10 * time.Millisecond)

	// Two Go node processes on the libring engine. go1 lists the BEAM node
	// and this binary's node; go2 only the BEAM node.
	name := func(s string) string { return fmt.Sprintf("%s_r%s@127.0.0.1", s, rel) }
	var err error
	goStart := time.Now()
	cfg := libringConfig
	if w.otp() >= 26 {
		cfg = libring26Config
	}
	spec := func(n string, sentries ...string) cloistertest.Spec {
		return cloistertest.Spec{Name: n, Sentry: sentries, Consensus: 5, OTPApp: otpApp, Void: true,
			Args: []string{"-config", cfg, "-roles", "worker", "-meta", "lang=go"}}
	}
	go1, err := h.Start(spec(name("go1"), erlA.Name, goIn))
	if err != nil {
		forming.finish()
		t.Fatal(err)
	}
	t.Cleanup(go1.Kill)
	go2, err := h.Start(spec(name("go2"), erlA.Name))
	if err != nil {
		forming.finish()
		t.Fatal(err)
	}
	t.Cleanup(go2.Kill)
	w.viewMu.Lock()
	w.go1, w.go2 = go1, go2
	w.viewMu.Unlock()
	w.goNames = []string{goIn, w.go1.Name, w.go2.Name}
	all := slices.Sorted(slices.Values(append([]string{erlA.Name, erlB.Name}, w.goNames...)))
	t.Logf("OTP %s: BEAM nodes up in %s; cluster %v", r.Release, ms(time.Since(setup)), all)

	if !check(t, rel, "consensus 5 (3 Go + 2 Erlang): all ready, one ring", func(t *testing.T) string {
		awaitGoNode(t, 60*time.Second)
		for _, g := range []*cloistertest.Node{w.go1, w.go2} {
			if _, err := g.WaitStatus(60*time.Second, "ready", func(s listener.Snapshot) bool { return s.Ready() }); err != nil {
				t.Fatal(err)
			}
		}
		w.converge(t, all, 60*time.Second)
		for _, e := range w.beam {
			expectEval(t, e, "maps:get(state, cloister_member:state())", "ready")
		}
		return ms(time.Since(goStart)) + " from the Go processes' start"
	}) {
		forming.finish()
		t.Fatal("the mixed cluster did not form; the other checks need it")
	}
	formed := forming.finish()
	check(t, rel, "owner disagreement while the cluster forms (1000 keys, any two members, samples every 10 ms)", func(t *testing.T) string {
		all0 := describe(disagreement(formed, w.otp(), goStart, 0))
		ready := describe(disagreement(formed, w.otp(), goStart, 5))
		gap := ms(readyGap(formed, w.goNames, 5))
		t.Logf("forming: %d samples; all members: %s; ready members: %s; a Go node ready while a BEAM member is not: %s", len(formed), all0, ready, gap)
		return "from the Go processes' start, any two members: " + all0 + "; any two ready members (ring ≥ consensus): " + ready +
			"; a Go node ready while a BEAM member is not: " + gap
	})

	check(t, rel, "BEAM node as the only sentry: dialled, full mesh", func(t *testing.T) string {
		s, err := w.go2.Status()
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range all {
			if n != w.go2.Name && !slices.Contains(s.Connected, n) {
				t.Errorf("go2 (sentry %s only) not connected to %s: %v", erlA.Name, n, s.Connected)
			}
		}
		nodes := atomsOf(evalTerm(t, erlB, "nodes()"))
		for _, g := range w.goNames {
			if !slices.Contains(nodes, g) {
				t.Errorf("%s (sentry %s only) not connected to %s: %v", erlB.Name, erlA.Name, g, nodes)
			}
		}
		return ""
	})

	check(t, rel, "owners agree on 10k keys (Go Whois = Erlang libring)", func(t *testing.T) string {
		return w.ownersAgree(t, all, []*erltest.Node{erlA, erlB}, []string{w.go1.Name, w.go2.Name})
	})
	check(t, rel, "owners agree on term keys (Go WhoisTerm and {whois} with atoms = Erlang libring)", func(t *testing.T) string {
		return w.termOwnersAgree(t, erlA, all, []string{w.go1.Name, w.go2.Name})
	})

	check(t, rel, "replica sets agree (erl → Go {whois_n} and Go WhoisN = Erlang key_to_nodes, n = 1, 2, 3, 6)", func(t *testing.T) string {
		return w.replicasAgree(t, erlA, all, []string{w.go1.Name, w.go2.Name})
	})
	w.erlCallsGo(t, all)
	w.goCallsErl(t, all)
	w.plainNode(t, all)
	if elixirOK[rel] {
		w.elixirMember(t, all)
	} else {
		t.Logf("*** OTP %s: no elixir in this runtime: Elixir rows SKIPPED ***", rel)
	}
	w.freezeErl(t, all)
	w.killErl(t, all)
	w.leaveGo(t)
}

// leaveGo: a Go member leaves gracefully. The Go members drop it with
// reason left; the Erlang member's Monitor is sent no leave message (its
// state answer does not say it takes them), which a receive trace on it
// shows.
func (w *row) leaveGo(t *testing.T) {
	check(t, w.rel, "a Go member leaves: Go members drop it as left, the Erlang member is sent no leave message", func(t *testing.T) string {
		if err := w.go1.CaughtUp(10 * time.Second); err != nil {
			t.Fatal(err)
		}
		expectEval(t, w.erlA, `T = spawn(fun() -> (fun L(Acc) -> receive {trace, _, 'receive', M} -> L([M | Acc]); {get, F} -> F ! {got, Acc}, L(Acc); stop -> ok end end)([]) end),
			true = register(leave_tracer, T),
			erlang:trace(whereis('Elixir.Cloister.Monitor'), true, ['receive', {tracer, T}])`, "1")
		defer evalT(t, w.erlA, `erlang:trace(whereis('Elixir.Cloister.Monitor'), false, ['receive']), leave_tracer ! stop, ok`)
		t0 := time.Now()
		if err := w.go2.Leave(); err != nil {
			t.Fatal(err)
		}
		rm, err := w.go1.WaitFor(20*time.Second, "go2 removed", func(e cloistertest.NodeEvent) bool {
			return e.Event == "removed" && e.Member == w.go2.Name
		})
		if err != nil {
			t.Fatal(err)
		}
		if rm.Reason != string(listener.RemovedLeft) {
			t.Errorf("go1 removed go2 with reason %q, want left", rm.Reason)
		}
		took := time.Unix(0, rm.At).Sub(t0)
		got := evalT(t, w.erlA, `leave_tracer ! {get, self()},
			receive {got, Ms} -> {length(Ms) > 0, [M || M <- Ms, is_tuple(M), tuple_size(M) > 0,
				lists:member(element(1, M), ['$cloister_leave', '$cloister_leave_ack'])]}
			after 5000 -> timeout end`)
		if got != "{true,[]}" {
			t.Fatalf("the Erlang member's Monitor received (traced any, leave messages): %s", got)
		}
		return ms(took) + " from the leave to go1's removal (reason left)"
	})
}

// ownersAgree compares the owners of keyCount keys: this binary's Whois
// against each BEAM node's libring ring, and each BEAM-side owner against
// the Go node processes' answers to {whois, <<>>, Key} (asked from erl).
func (w *row) ownersAgree(t *testing.T, members []string, beam []*erltest.Node, goProcs []string) string {
	c := cloister.Default()
	mine := make([]string, keyCount)
	t0 := time.Now()
	for i := range mine {
		o, err := c.Whois("", key(i))
		if err != nil {
			t.Fatal(err)
		}
		mine[i] = o
	}
	goTook := time.Since(t0)
	for _, e := range beam {
		v := evalTerm(t, e, fmt.Sprintf("cloister_member:owner_indices(%d)", keyCount)).(Tuple)
		ring := atomsOf(v[0])
		if !slices.Equal(ring, members) {
			t.Fatalf("%s ring members %v, want %v", e.Name, ring, members)
		}
		idx := v[1].(List)
		if len(idx) != keyCount {
			t.Fatalf("%s: %d owners", e.Name, len(idx))
		}
		bad := 0
		for i, x := range idx {
			if o := ring[x.(int64)]; o != mine[i] {
				if bad < 5 {
					t.Errorf("key %d %q: Go owner %s, %s says %s", i, key(i), mine[i], e.Name, o)
				}
				bad++
			}
		}
		if bad > 0 {
			t.Fatalf("%d of %d owners differ between %s and Go", bad, keyCount, e.Name)
		}
	}
	var erlTook []string
	for _, g := range goProcs {
		v := evalTerm(t, beam[0], fmt.Sprintf("cloister_member:check_whois(%s, %d, 16)", q(g), keyCount)).(Tuple)
		if v[0] != int64(keyCount) || v[1] != int64(0) {
			t.Fatalf("%s asked %s for %v owners: %v differ, e.g. %v", beam[0].Name, g, v[0], v[1], v[2])
		}
		erlTook = append(erlTook, ms(time.Duration(v[3].(int64))*time.Microsecond))
	}
	owned := map[string]int{}
	for _, o := range mine {
		owned[o]++
	}
	t.Logf("keys per owner: %v", owned)
	return fmt.Sprintf("Go Whois ×10k %s; erl→Go {whois} calls ×10k (16 at a time) %s",
		ms(goTook), strings.Join(erlTook, " / "))
}

// termOwnersAgree compares, for keys that are not binaries (atoms, tuples,
// integers, floats, lists, booleans), this binary's WhoisTerm with the
// Erlang node's libring owner; and, for the atoms, the Go node processes'
// answers to {whois, <<>>, Atom} asked from erl.
func (w *row) termOwnersAgree(t *testing.T, e *erltest.Node, members, goProcs []string) string {
	type termKey struct {
		erl  string
		term etf.Term
	}
	var keys []termKey
	var atoms []string
	for i := 0; i < 100; i++ {
		a := fmt.Sprintf("key_%d", i)
		atoms = append(atoms, a)
		keys = append(keys,
			termKey{a, etf.Atom(a)},
			termKey{fmt.Sprintf("{user, %d}", i), etf.Tuple{etf.Atom("user"), i}},
			termKey{strconv.Itoa(i*7919 - 300), i*7919 - 300},
		)
	}
	keys = append(keys,
		termKey{"1.5", 1.5}, termKey{"true", true}, termKey{"[1,2,3]", etf.List{1, 2, 3}},
		termKey{"{<<\"a\">>, b, [c]}", etf.Tuple{[]byte("a"), etf.Atom("b"), etf.List{etf.Atom("c")}}},
		termKey{"123456789012345678901234567890", mustBig("123456789012345678901234567890")},
	)
	erlKeys := make([]string, len(keys))
	for i, k := range keys {
		erlKeys[i] = k.erl
	}
	theirs := atomsOf(evalTerm(t, e, "begin {_, T} = gen_server:call('Elixir.Cloister.Monitor', ring), "+
		"[cloister_member:owner_in(T, K) || K <- ["+strings.Join(erlKeys, ", ")+"]] end"))
	if len(theirs) != len(keys) {
		t.Fatalf("%s gave %d owners for %d keys", e.Name, len(theirs), len(keys))
	}
	// This binary's node runs the OTP 25 engine (libring.Engine), so its
	// WhoisTerm is compared on the OTP 25 row; on every row the engine of
	// the row's release is compared, and the Go processes run it.
	c := cloister.Default()
	if got := c.Siblings(); !slices.Equal(got, members) {
		t.Fatalf("ring members %v, want %v", got, members)
	}
	// The engine's lookup hashes terms itself (see ring.Lookup).
	l := libring.EngineFor(w.otp()).Build(members).(interface {
		Owner(key string) string
		OwnerTerm(key etf.Term) (string, error)
	})
	differ := 0
	for i, k := range keys {
		mine, err := l.OwnerTerm(k.term)
		if err != nil {
			t.Fatalf("OwnerTerm(%s): %v", k.erl, err)
		}
		if mine != theirs[i] {
			t.Errorf("key %s: Go libring.EngineFor(%d) %s, %s says %s", k.erl, w.otp(), mine, e.Name, theirs[i])
		}
		if w.otp() < 26 {
			if viaFacade, err := c.WhoisTerm("", k.term); err != nil || viaFacade != mine {
				t.Errorf("key %s: Go WhoisTerm %s %v, %s says %s", k.erl, viaFacade, err, e.Name, theirs[i])
			}
		}
		if a, ok := k.term.(etf.Atom); ok && l.Owner(string(a)) != mine {
			differ++
		}
	}
	for _, g := range goProcs {
		got := atomsOf(evalTerm(t, e, fmt.Sprintf("[element(2, gen_server:call({'Elixir.Cloister.Monitor', %s}, {whois, <<>>, K})) || K <- [%s]]", q(g), strings.Join(atoms, ", "))))
		for i, a := range atoms {
			if i >= len(got) || got[i] != theirs[3*i] {
				t.Fatalf("%s asked %s {whois, <<>>, %s}: %v, libring says %s", e.Name, g, a, got, theirs[3*i])
			}
		}
	}
	return fmt.Sprintf("%d term keys agree; %d of %d atoms have another owner than their name as a binary", len(keys), differ, len(atoms))
}

// otp is the row's OTP release as a number.
func (w *row) otp() int {
	n, err := strconv.Atoi(w.rel)
	if err != nil {
		panic("OTP release " + w.rel)
	}
	return n
}

func mustBig(s string) *big.Int {
	b, ok := new(big.Int).SetString(s, 10)
	if !ok {
		panic(s)
	}
	return b
}

// erlCallsGo: gen_server:call, multi_call, cast, abcast, ping and rpc from
// an Erlang member to the Go nodes.
func (w *row) erlCallsGo(t *testing.T, all []string) {
	e := w.erlA
	check(t, w.rel, "erl gen_server:call → Go (Void ping, Monitor state)", func(t *testing.T) string {
		for _, g := range w.goNames {
			expectEval(t, e, fmt.Sprintf("R = gen_server:call({'Void', %s}, {ping, self()}), {R, interop_bench:pong_nodes(1, 5000)}", q(g)),
				fmt.Sprintf("{ok,[%s]}", q(g)))
			st := evalTerm(t, e, fmt.Sprintf("gen_server:call({'Elixir.Cloister.Monitor', %s}, state)", q(g))).(Map)
			if st["fsm"] != Binary("monitor_"+otpApp) || st["ring"] != Atom(otpApp) {
				t.Fatalf("%s state: %v", g, st)
			}
		}
		v := evalTerm(t, e, fmt.Sprintf("{T, _} = timer:tc(fun() -> [ok = gen_server:call({'Void', %s}, x) || _ <- lists:seq(1, 500)] end), T div 500", q(goIn)))
		return fmt.Sprintf("%d µs/call (erl-side, 500 calls)", v.(int64))
	})
	check(t, w.rel, "Monitor state to BEAM callers: exactly the original's keys fsm, ring, groups (call, multi_call, rpc); Go callers get ours too", func(t *testing.T) string {
		want := "[fsm,groups,ring]"
		for _, g := range w.goNames {
			expectEval(t, e, fmt.Sprintf("lists:sort(maps:keys(gen_server:call({'Elixir.Cloister.Monitor', %s}, state)))", q(g)), want)
			expectEval(t, e, fmt.Sprintf("lists:sort(maps:keys(rpc:call(%s, gen_server, call, ['Elixir.Cloister.Monitor', state])))", q(g)), want)
		}
		expectEval(t, e, fmt.Sprintf("{R, []} = gen_server:multi_call(%s, 'Elixir.Cloister.Monitor', state, 5000), lists:usort([lists:sort(maps:keys(S)) || {_, S} <- R])", erlList(all)),
			"["+want+"]")
		res, err := cloister.Default().Multicall([]string{w.go1.Name}, actors.MonitorName, etf.Atom("state"), 5*time.Second)
		if err != nil || res[0].Err != nil {
			t.Fatalf("Go Multicall state: %v %+v", err, res)
		}
		if st, _ := res[0].Reply.(etf.Map); st[etf.Atom("state")] != etf.Atom("ready") || st[etf.Atom("epoch")] == nil {
			t.Fatalf("a Go caller lost the extra keys: %#v", res[0].Reply)
		}
		if st, _ := res[0].Reply.(etf.Map); st[etf.Atom("roles")] == nil {
			t.Fatalf("a Go caller got no roles: %#v", res[0].Reply)
		}
		// The Go nodes announce role worker; the BEAM members count as
		// having none.
		snap, err := w.go1.Status()
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range w.beam {
			if rs, ok := snap.Roles[b.Name]; ok {
				t.Fatalf("BEAM member %s has roles %v on %s", b.Name, rs, w.go1.Name)
			}
		}
		if !slices.Equal(snap.Roles[w.go2.Name], []string{"worker"}) {
			t.Fatalf("roles on %s: %v", w.go1.Name, snap.Roles)
		}
		return ""
	})
	check(t, w.rel, "erl gen_server:multi_call → all 5 Monitors (whois and state)", func(t *testing.T) string {
		owner, err := cloister.Default().Whois("", "key:42")
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		v := evalTerm(t, e, fmt.Sprintf(`gen_server:multi_call(%s, 'Elixir.Cloister.Monitor', {whois, <<>>, <<"key:42">>}, 5000)`, erlList(all))).(Tuple)
		took := time.Since(t0)
		replies, bad := v[0].(List), v[1].(List)
		if len(bad) != 0 || len(replies) != len(all) {
			t.Fatalf("multi_call whois: replies %v, bad nodes %v", replies, bad)
		}
		for _, x := range replies {
			rep := x.(Tuple)
			if fmt.Sprint(rep[1]) != fmt.Sprint(Tuple{Atom("ok"), Atom(owner)}) {
				t.Errorf("%v answered %v, want {ok, %s}", rep[0], rep[1], owner)
			}
		}
		v = evalTerm(t, e, fmt.Sprintf(`{R, B} = gen_server:multi_call(%s, 'Elixir.Cloister.Monitor', state, 5000), {[{N, proplists:get_value(ring, maps:get(groups, S))} || {N, S} <- R], B}`, erlList(all))).(Tuple)
		replies, bad = v[0].(List), v[1].(List)
		if len(bad) != 0 || len(replies) != len(all) {
			t.Fatalf("multi_call state: replies %v, bad nodes %v", replies, bad)
		}
		for _, x := range replies {
			rep := x.(Tuple)
			if got := atomsOf(rep[1]); !slices.Equal(got, all) {
				t.Errorf("%v ring %v, want %v", rep[0], got, all)
			}
		}
		// The Node actor answers the multi_call form too (Multiapply).
		v = evalTerm(t, e, fmt.Sprintf(`gen_server:multi_call(%s, 'Elixir.Cloister.Node', {multiapply, <<"interop:add">>, [1, 2]}, 5000)`, erlList(w.goNames))).(Tuple)
		replies, bad = v[0].(List), v[1].(List)
		if len(bad) != 0 || len(replies) != len(w.goNames) {
			t.Fatalf("multi_call Node: replies %v, bad nodes %v", replies, bad)
		}
		for _, x := range replies {
			rep := x.(Tuple)
			want := "[error [undef [105 110 116 101 114 111 112 58 97 100 100]]]" // {error, {undef, <<"interop:add">>}}
			if rep[0] == Atom(goIn) {
				want = "[ok 3]"
			}
			if got := fmt.Sprint(rep[1]); got != want && !(rep[0] != Atom(goIn) && strings.HasPrefix(got, "[error [undef")) {
				t.Errorf("%v: %s, want %s", rep[0], got, want)
			}
		}
		return ms(took) + " (whois to 5, Eval round trip included)"
	})
	check(t, w.rel, "erl gen_server:multi_call → 5 Voids (a plain Go gen.Server: no multi_call code), no bad nodes", func(t *testing.T) string {
		t0 := time.Now()
		expectEval(t, e, fmt.Sprintf("{R, B} = gen_server:multi_call(%s, 'Void', {ping, self()}, 2000), {lists:sort([N || {N, ok} <- R]), B, interop_bench:pong_nodes(5, 5000)}", erlList(all)),
			fmt.Sprintf("{%s,[],%s}", erlList(all), erlList(all)))
		return ms(time.Since(t0)) + " for 5 (Eval included)"
	})
	check(t, w.rel, "erl global with 3 Go nodes connected: sync returns, register_name/whereis_name/trans as among BEAM nodes, no disconnects", func(t *testing.T) string {
		bounded := func(expr string) string {
			return "Self = self(), spawn(fun() -> Self ! {b, begin " + expr + " end} end), receive {b, R} -> R after 10000 -> timeout end"
		}
		t0 := time.Now()
		for _, n := range w.beam {
			expectEval(t, n, bounded("global:sync()"), "ok")
		}
		took := time.Since(t0)
		expectEval(t, e, "global:register_name(interop_g, whereis('Void'))", "yes")
		expectEval(t, w.erlB, "ok = begin "+bounded("global:sync()")+" end, node(global:whereis_name(interop_g))", q(e.Name))
		expectEval(t, w.erlB, bounded("global:trans({interop_res, self()}, fun() -> in_trans end)"), "in_trans")
		expectEval(t, e, "global:unregister_name(interop_g)", "ok")
		for _, n := range w.beam {
			for _, g := range w.goNames {
				expectEval(t, n, fmt.Sprintf("lists:member(%s, nodes())", q(g)), "true")
			}
			if out := n.Output(); strings.Contains(out, "overlapping partitions") {
				t.Errorf("%s: global disconnected a node:\n%s", n.Name, out)
			}
		}
		return ms(took) + " for sync on both BEAM members"
	})
	check(t, w.rel, "erl gen_server:cast → Go Void", func(t *testing.T) string {
		expectEval(t, e, fmt.Sprintf("[gen_server:cast({'Void', G}, {ping, self()}) || G <- %s], interop_bench:pong_nodes(3, 5000)", erlList(w.goNames)),
			erlList(slices.Sorted(slices.Values(w.goNames))))
		return ""
	})
	check(t, w.rel, "erl gen_server:abcast → 5 Voids (Go and Erlang)", func(t *testing.T) string {
		expectEval(t, e, fmt.Sprintf("abcast = gen_server:abcast(%s, 'Void', {ping, self()}), interop_bench:pong_nodes(5, 5000)", erlList(all)),
			erlList(all))
		return ""
	})
	check(t, w.rel, "erl net_adm:ping(Go) → pong", func(t *testing.T) string {
		v := evalTerm(t, e, fmt.Sprintf("[net_adm:ping(G) || G <- %s]", erlList(w.goNames)))
		for i, x := range v.(List) {
			if x != Atom("pong") {
				t.Errorf("ping %s: %v", w.goNames[i], x)
			}
		}
		us := evalTerm(t, e, fmt.Sprintf("{T, _} = timer:tc(fun() -> [pong = net_adm:ping(%s) || _ <- lists:seq(1, 200)] end), T div 200", q(goIn)))
		return fmt.Sprintf("%d µs/ping", us.(int64))
	})
	check(t, w.rel, "erl rpc:call into Go (erlang:node/0, a registered Go function), rpc:multicall", func(t *testing.T) string {
		for _, g := range w.goNames {
			expectEval(t, e, fmt.Sprintf("rpc:call(%s, erlang, node, [])", q(g)), q(g))
		}
		expectEval(t, e, fmt.Sprintf("rpc:call(%s, interop, add, [1, 2])", q(goIn)), "3")
		expectEval(t, e, fmt.Sprintf("rpc:multicall(%s, erlang, node, [])", erlList(all)), fmt.Sprintf("{%s,[]}", erlList(all)))
		v := evalTerm(t, e, fmt.Sprintf("interop_bench:rpc_loop(%s, interop, add, [20, 22], 500)", q(goIn))).(Tuple)
		if v[0] != Atom("ok") || v[2] != int64(42) {
			t.Fatalf("rpc loop: %v", v)
		}
		return fmt.Sprintf("%d µs/rpc:call of a Go function", v[1].(int64)/1000)
	})
}

// goCallsErl: Multicall and Multicast from this binary's node to the BEAM
// members, with one result per node.
func (w *row) goCallsErl(t *testing.T, all []string) {
	c := cloister.Default()
	erls := []string{w.erlA.Name, w.erlB.Name}
	check(t, w.rel, "Go Multicall → Erlang processes (per-node results)", func(t *testing.T) string {
		drainInbox()
		t0 := time.Now()
		res, err := c.Multicall(erls, "Void", etf.Tuple{etf.Atom("ping"), inboxP.Self()}, 2*time.Second)
		took := time.Since(t0)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range res {
			if r.Node != erls[i] || r.Err != nil || r.Reply != etf.Atom("ok") {
				t.Errorf("result %d: %+v", i, r)
			}
		}
		if got := pongs(t, 2); !slices.Equal(got, slices.Sorted(slices.Values(erls))) {
			t.Fatalf("pongs from %v, want %v", got, erls)
		}
		// Every member's Monitor state, parsed as the Go Monitor parses a peer's.
		res, err = c.Multicall(all, actors.MonitorName, etf.Atom("state"), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.Err != nil {
				t.Errorf("%s: %v", r.Node, r.Err)
				continue
			}
			app, members, ok := clusterstate.ParseState(r.Reply)
			sort.Strings(members)
			if !ok || app != otpApp || !slices.Equal(members, all) {
				t.Errorf("%s state: app %q members %v ok %v", r.Node, app, members, ok)
			}
		}
		return ms(took) + " (2 Erlang nodes)"
	})
	check(t, w.rel, "Go Multiapply → BEAM members run Module:Function by rpc (Cloister.Node, inert as the original's, never called); Go members run the Go function", func(t *testing.T) string {
		return w.multiapplyBEAM(t, all, []*erltest.Node{w.erlA, w.erlB}, "cloister_member")
	})
	check(t, w.rel, "Go RPC → a BEAM node (value, exception, Go node refused)", func(t *testing.T) string {
		t0 := time.Now()
		v, err := c.RPC(w.erlA.Name, "erlang", "node", nil, 5*time.Second)
		took := time.Since(t0)
		if err != nil || v != etf.Atom(w.erlA.Name) {
			t.Fatalf("RPC erlang:node(): %#v, %v", v, err)
		}
		_, err = c.RPC(w.erlA.Name, "cloister_member", "raise", etf.List{etf.Atom("exit"), []byte("gone")}, 5*time.Second)
		var re *cloister.RemoteError
		if !errors.Is(err, cloister.ErrRemote) || !errors.As(err, &re) || re.Class != "exit" || !strings.Contains(err.Error(), `exit: <<"gone">>`) {
			t.Fatalf("RPC raise(exit, <<\"gone\">>): %v", err)
		}
		if _, err := c.RPC(w.go1.Name, "erlang", "node", nil, time.Second); !errors.Is(err, cloister.ErrInvalidArgument) {
			t.Fatalf("RPC to a Go node: %v, want an invalid-argument error", err)
		}
		return ms(took) + " for erlang:node()"
	})
	check(t, w.rel, "Go Multicast → Erlang processes", func(t *testing.T) string {
		drainInbox()
		if err := c.Multicast(erls, "Void", etf.Tuple{etf.Atom("ping"), inboxP.Self()}); err != nil {
			t.Fatal(err)
		}
		if got := pongs(t, 2); !slices.Equal(got, slices.Sorted(slices.Values(erls))) {
			t.Fatalf("pongs from %v, want %v", got, erls)
		}
		return ""
	})
}

// plainNode: an erl node without the Monitor module connects to everyone
// and never enters a ring; a Multicall to it is a per-node noproc.
func (w *row) plainNode(t *testing.T, all []string) {
	check(t, w.rel, "plain erl node (no Monitor) connected to all, never in a ring", func(t *testing.T) string {
		p, err := env.StartNode("plain", erltest.NodeOptions{Runtime: w.r, Paths: []string{w.dir}})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Stop()
		// In the Monitor's place a silent process counts the probes, per
		// prober. Probes are plain sends that nobody monitors, so to a
		// prober it is the same as no process: nothing ever answers.
		expectEval(t, p, "P = spawn(fun() -> (fun Loop(C) -> receive "+
			"{'$gen_call', {From, _}, state} when is_pid(From) -> Loop(maps:update_with(node(From), fun(X) -> X + 1 end, 1, C)); "+
			"{probes, To} -> To ! {probes, C}, Loop(C); "+
			"_ -> Loop(C) end end)(#{}) end), true = register('Elixir.Cloister.Monitor', P), ok", "ok")
		v := evalTerm(t, p, fmt.Sprintf("[net_kernel:connect_node(N) || N <- %s]", erlList(all)))
		for i, x := range v.(List) {
			if x != Atom("true") {
				t.Fatalf("plain node connect %s: %v", all[i], x)
			}
		}
		// Every member probes it twice: a Go Monitor's second probe comes
		// a re-probe interval (2 s) after the first, past the probe
		// timeout (2 heartbeats), so by then each has seen a probe go
		// unanswered and decided; an erl member probes every tick.
		connected := time.Now()
		testenv.WaitFor(t, 30*time.Second, "every member to probe the plain node twice", func() bool {
			probed := atomsOf(evalTerm(t, p, "'Elixir.Cloister.Monitor' ! {probes, self()}, "+
				"receive {probes, C} -> [N || {N, K} <- maps:to_list(C), K >= 2] after 5000 -> [] end"))
			for _, n := range all {
				if !slices.Contains(probed, n) {
					return false
				}
			}
			return true
		})
		probed := time.Since(connected)
		if s := cloister.State(); !slices.Contains(s.Connected, p.Name) {
			t.Errorf("in-process node not connected to the plain node: %v", s.Connected)
		}
		for n, m := range w.views(t) {
			if slices.Contains(m, p.Name) {
				t.Errorf("%s has the plain node in its ring: %v", n, m)
			}
			if !slices.Equal(m, all) {
				t.Errorf("%s ring %v, want %v", n, m, all)
			}
		}
		res, err := cloister.Default().Multicall([]string{w.erlA.Name, p.Name}, "Void", etf.Atom("x"), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if res[0].Err != nil || !errors.Is(res[1].Err, cloister.ErrNoSuchProcess) {
			t.Errorf("Multicall [member, plain]: %+v / %+v; want ok / no such process", res[0], res[1])
		}
		return "probed twice by every member " + ms(probed) + " after connecting"
	})
	// its departure must not disturb the ring
	w.converge(t, all, 10*time.Second)
}

// elixirMember: an Elixir node joins as a sixth member, calls Go nodes the
// Elixir way, then sends a string-keyed map to a Go process (Ergo's decoder
// drops the link on it): the cluster must be whole again within 20 s.
func (w *row) elixirMember(t *testing.T, all []string) {
	var x *erltest.Node
	six := slices.Sorted(slices.Values(all))
	rowT := t
	check(t, w.rel, "Elixir member (the model of the original's tree): GenServer.call / multi_call → Go", func(t *testing.T) string {
		n, err := env.StartNode("elixir", erltest.NodeOptions{Runtime: w.r, Paths: []string{w.dir, exDir(t, w.r)}, Elixir: true})
		if err != nil {
			t.Fatal(err)
		}
		rowT.Cleanup(n.Stop)
		x = n
		// the model of the original's tree (testdata/cloister_model.ex)
		expectEval(t, x, fmt.Sprintf(`{ok, _} = 'Elixir.CloisterModel':start(<<"%s">>, [%s], #{consensus => 5}), ok`,
			otpApp, q(w.erlA.Name)), "ok")
		w.beam = append(w.beam, x)
		six = slices.Sorted(slices.Values(append(slices.Clone(all), x.Name)))
		took := w.converge(t, six, 30*time.Second)
		for _, g := range w.goNames {
			expectEval(t, x, fmt.Sprintf("R = 'Elixir.GenServer':call({'Void', %s}, {ping, self()}), {R, interop_bench:pong_nodes(1, 5000)}", q(g)),
				fmt.Sprintf("{ok,[%s]}", q(g)))
		}
		owner, _ := cloister.Default().Whois("", "key:7")
		v := evalTerm(t, x, fmt.Sprintf(`'Elixir.GenServer':multi_call(%s, 'Elixir.Cloister.Monitor', {whois, <<>>, <<"key:7">>}, 5000)`, erlList(w.goNames))).(Tuple)
		if len(v[0].(List)) != 3 || len(v[1].(List)) != 0 {
			t.Fatalf("Elixir multi_call: %v", v)
		}
		for _, r := range v[0].(List) {
			if fmt.Sprint(r.(Tuple)[1]) != fmt.Sprint(Tuple{Atom("ok"), Atom(owner)}) {
				t.Errorf("%v", r)
			}
		}
		return ms(took) + " to join as the 6th member"
	})
	if x == nil {
		return
	}
	check(t, w.rel, "Go Multiapply → the Elixir model: rpc of Module.function, exception text as text, its Cloister.Node never called", func(t *testing.T) string {
		took := w.multiapplyBEAM(t, six, []*erltest.Node{x}, "Elixir.CloisterModel")
		c := cloister.Default()
		res, err := c.Multiapply([]string{x.Name}, "Elixir.CloisterModel:boom", etf.List{[]byte("bad thing")}, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var re *cloister.RemoteError
		if !errors.As(res[0].Err, &re) || re.Class != "error" || !strings.Contains(res[0].Err.Error(), "** (RuntimeError) bad thing") {
			t.Fatalf("boom: %v", res[0].Err)
		}
		_, err = c.RPC(x.Name, "Elixir.CloisterModel", "missing_key", etf.List{etf.Atom("k")}, 5*time.Second)
		if !errors.As(err, &re) || !strings.Contains(err.Error(), "** (KeyError) key :k not found") {
			t.Fatalf("missing_key: %v", err)
		}
		// the original's own multiapply from the Elixir side reaches Go and BEAM alike
		v := evalTerm(t, x, fmt.Sprintf("'Elixir.CloisterModel':multiapply(%s, erlang, node, [])", erlList(six))).(Tuple)
		if got := atomsOf(v[0]); !slices.Equal(slices.Sorted(slices.Values(got)), six) || len(v[1].(List)) != 0 {
			t.Fatalf("Elixir multiapply(erlang, node, []): %v", v)
		}
		t.Logf("Elixir exception as Go sees it: %v", res[0].Err)
		return took
	})
	check(t, w.rel, `Elixir %{"k" => v} to a Go process: cluster whole again ≤ 20 s`, func(t *testing.T) string {
		// Watched from the Elixir node with monitor_nodes: the drop and the
		// relink can both be faster than any polling.
		// The Go side of the dropped link is go1: does its ring change?
		epoch := func() uint64 {
			st, err := w.go1.Status()
			if err != nil {
				t.Fatal(err)
			}
			return st.Rings[otpApp].Epoch
		}
		epoch0 := epoch()
		t0 := time.Now()
		v := evalTerm(t, x, fmt.Sprintf(`interop_bench:send_watch({'Void', %s}, #{<<"k">> => 1}, 2000, 20000)`, q(w.go1.Name)))
		ok := testenv.Poll(20*time.Second, func() bool {
			views := w.views(t)
			for _, m := range views {
				if !slices.Equal(m, six) {
					return false
				}
			}
			return len(views) == 3+len(w.beam)
		})
		whole := time.Since(t0)
		if !ok {
			t.Fatalf("rings not identical 20 s after the map: %v (link: %v)", w.views(t), v)
		}
		expectEval(t, x, fmt.Sprintf("R = 'Elixir.GenServer':call({'Void', %s}, {ping, self()}), {R, interop_bench:pong_nodes(1, 5000)}", q(w.go1.Name)),
			fmt.Sprintf("{ok,[%s]}", q(w.go1.Name)))
		// The same to this binary's inbox: what, if anything, arrives?
		drainInbox()
		w2 := evalTerm(t, x, fmt.Sprintf(`interop_bench:send_watch({interop_inbox, %s}, #{<<"k">> => 1}, 2000, 20000)`, q(goIn)))
		if !testenv.Poll(20*time.Second, func() bool {
			v, err := x.Eval(fmt.Sprintf("lists:member(%s, nodes())", q(goIn)))
			return err == nil && v == "true"
		}) {
			t.Fatalf("%s not relinked to %s: %v", x.Name, goIn, w2)
		}
		expectEval(t, x, fmt.Sprintf(`{interop_inbox, %s} ! after_map, ok`, q(goIn)), "ok")
		var got []string
		for done := false; !done; {
			select {
			case m := <-inbox.got:
				got = append(got, fmt.Sprintf("%#v", m))
				done = m == etf.Atom("after_map")
			case <-time.After(5 * time.Second):
				t.Fatalf("after_map never arrived; got %v", got)
			}
		}
		t.Logf("to the Go node process: %v; to the in-process node: %v, then it received %v", v, w2, got)
		rehashes := fmt.Sprintf("go1's ring epoch +%d", epoch()-epoch0)
		tup, _ := v.(Tuple)
		if len(tup) == 3 && tup[0] == Atom("dropped") {
			down, _ := tup[1].(int64)
			back := fmt.Sprint(tup[2])
			if up, ok := tup[2].(int64); ok {
				back = ms(time.Duration(up) * time.Microsecond)
			}
			return fmt.Sprintf("link dropped at %s, back at %s (Elixir's nodedown/nodeup); rings identical at %s; %s; the map is lost",
				ms(time.Duration(down)*time.Microsecond), back, ms(whole), rehashes)
		}
		return fmt.Sprintf("link kept (%v); rings identical after %s; %s", v, ms(whole), rehashes)
	})
	x.Stop()
	w.beam = slices.DeleteFunc(w.beam, func(n *erltest.Node) bool { return n == x })
	w.converge(t, all, 15*time.Second)
}

// killErl: SIGKILL an Erlang member; the Go survivors rehash without it
// and still agree with the surviving Erlang member on every owner.
func (w *row) killErl(t *testing.T, all []string) {
	four := slices.DeleteFunc(slices.Clone(all), func(n string) bool { return n == w.erlB.Name })
	check(t, w.rel, "kill -9 an Erlang member: Go survivors rehash (4 < consensus 5)", func(t *testing.T) string {
		for _, g := range []*cloistertest.Node{w.go1, w.go2} {
			if err := g.CaughtUp(10 * time.Second); err != nil {
				t.Fatal(err)
			}
		}
		t0 := time.Now()
		w.erlB.Kill()
		w.beam = []*erltest.Node{w.erlA}
		w.converge(t, four, 20*time.Second)
		took := time.Since(t0) // from the kill, its wait for the exit included
		if s := cloister.State(); s.State != "rehashing" {
			t.Errorf("in-process node state %s, want rehashing", s.State)
		}
		for _, g := range []*cloistertest.Node{w.go1, w.go2} {
			if _, err := g.WaitTransition(5*time.Second, "ready", "rehashing", t0); err != nil {
				t.Error(err)
			}
		}
		transMu.Lock()
		saw := false
		for _, tr := range goInTrans {
			saw = saw || (tr.at.After(t0) && tr.from == "ready" && tr.to == "rehashing")
		}
		transMu.Unlock()
		if !saw {
			t.Error("in-process node: no ready → rehashing after the kill")
		}
		return ms(took) + " until every survivor's ring has 4"
	})
	check(t, w.rel, "owners agree after the kill (10k keys)", func(t *testing.T) string {
		return w.ownersAgree(t, four, []*erltest.Node{w.erlA}, []string{w.go1.Name})
	})
}

// multiapplyBEAM: a Go Multiapply over the ring runs the BEAM function on
// each BEAM member (mod:echo/1, mod:raise/2 or the Elixir model's) and the
// Go function of the same name on this binary's node; the BEAM members'
// Cloister.Node is never called: it is not restarted, nor is the Void after
// it (rest_for_one).
func (w *row) multiapplyBEAM(t *testing.T, ring []string, beam []*erltest.Node, mod string) string {
	c := cloister.Default()
	starts := func() []string {
		var out []string
		for _, e := range beam {
			out = append(out, evalT(t, e, "{"+q(mod)+":node_starts(), whereis('Void'), whereis('Elixir.Cloister.Node')}"))
		}
		return out
	}
	before := starts()
	echo := mod + ":echo"
	if _, ok := goFuncs.LoadOrStore(echo, true); !ok {
		if err := c.RegisterFunc(echo, func(args etf.List) (etf.Term, error) {
			return etf.Tuple{etf.Atom("echoed"), etf.Atom(goIn), args[0]}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now()
	res, err := c.Multiapply(nil, echo, etf.List{[]byte("hi")}, 5*time.Second)
	took := time.Since(t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(ring) {
		t.Fatalf("%d results for a ring of %d: %+v", len(res), len(ring), res)
	}
	isBEAM := map[string]bool{}
	for _, e := range beam {
		isBEAM[e.Name] = true
	}
	for _, r := range res {
		want := etf.Tuple{etf.Atom("echoed"), etf.Atom(r.Node), []byte("hi")}
		switch {
		case isBEAM[r.Node] || r.Node == goIn:
			if r.Err != nil || fmt.Sprintf("%#v", r.Reply) != fmt.Sprintf("%#v", want) {
				t.Errorf("%s: %#v, %v; want %#v", r.Node, r.Reply, r.Err, want)
			}
		case slices.ContainsFunc(w.beam, func(e *erltest.Node) bool { return e.Name == r.Node }):
			// another BEAM member, without that module
			var re *cloister.RemoteError
			if !errors.As(r.Err, &re) || re.Class != "error" || re.Reason != etf.Atom("undef") {
				t.Errorf("%s: %#v, %v; want error:undef", r.Node, r.Reply, r.Err)
			}
		default: // the Go node processes have no such Go function
			if !errors.Is(r.Err, cloister.ErrRemote) || !strings.Contains(r.Err.Error(), "not registered") {
				t.Errorf("%s: %#v, %v; want a remote 'not registered' error", r.Node, r.Reply, r.Err)
			}
		}
	}
	names := make([]string, len(beam))
	for i, e := range beam {
		names[i] = e.Name
	}
	for _, cls := range []string{"error", "exit", "throw"} {
		res, err := c.Multiapply(names, mod+":raise", etf.List{etf.Atom(cls), etf.Tuple{etf.Atom("bad"), []byte("thing")}}, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			var re *cloister.RemoteError
			if !errors.Is(r.Err, cloister.ErrRemote) || !errors.As(r.Err, &re) || re.Class != cls ||
				!strings.Contains(r.Err.Error(), cls+`: {bad, <<"thing">>}`) {
				t.Errorf("%s raise(%s): %v", r.Node, cls, r.Err)
			}
			if cls == "error" && re != nil && re.Stack == nil {
				t.Errorf("%s: error without a stack", r.Node)
			}
		}
	}
	// a Go function name (no Module:) is refused for BEAM members, not sent
	res, err = c.Multiapply(names, "interop_add", nil, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if !errors.Is(r.Err, cloister.ErrRefused) {
			t.Errorf("%s: %v, want refused", r.Node, r.Err)
		}
	}
	// A call or cast that reached a member's Cloister.Node would crash it,
	// and rest_for_one would restart it and the Void after it. That shows
	// in starts() once three things are done: whatever this node sent the
	// member is in its mailboxes (a round trip on the same link, which
	// keeps order), Cloister.Node has handled all it holds (a system
	// message, answered after them), and the Manager has handled the exit
	// and the restart (a system message to it).
	for _, e := range beam {
		if _, err := c.RPC(e.Name, "erlang", "node", nil, 5*time.Second); err != nil {
			t.Fatalf("round trip to %s: %v", e.Name, err)
		}
		expectEval(t, e, "_ = (catch sys:get_state('Elixir.Cloister.Node', 5000)), _ = sys:get_state('Elixir.Cloister.Manager', 5000), ok", "ok")
	}
	if after := starts(); !slices.Equal(after, before) {
		t.Fatalf("Cloister.Node restarted (starts, Void, Node before / after): %v / %v", before, after)
	}
	return ms(took) + fmt.Sprintf(" for %d nodes", len(ring))
}

// goFuncs are the Go functions registered on this binary's node by tests.
var goFuncs sync.Map

// replicaKeys is how many binary keys the replica-set check asks about.
const replicaKeys = 2000

// replicasAgree: the erl member asks each Go node process's Monitor for
// replica sets ({whois_n, <<>>, Key, N}) of binary and atom keys, n = 1,
// 2, 3 and 6 (more than the members), and compares them with key_to_nodes
// computed on its own ring (cloister_member:replicas_in/4); this binary's
// WhoisN is compared with the same for the binary keys. Some answers must
// be libring's short ones (a walk reaching the top of the ring), so that
// an implementation that wraps around fails here.
func (w *row) replicasAgree(t *testing.T, e *erltest.Node, members, goProcs []string) string {
	keys := fmt.Sprintf("[cloister_member:key(I) || I <- lists:seq(0, %d)] ++ [list_to_atom(\"key_\" ++ integer_to_list(I)) || I <- lists:seq(0, 99)]", replicaKeys-1)
	var took []string
	for _, g := range goProcs {
		v := evalTerm(t, e, fmt.Sprintf("cloister_member:check_whois_n(%s, %s, [1, 2, 3, 6])", q(g), keys)).(Tuple)
		if v[0] != int64(4*(replicaKeys+100)) || v[1] != int64(0) {
			t.Fatalf("%s asked %s for %v replica sets: %v differ, e.g. %v", e.Name, g, v[0], v[1], v[2])
		}
		if short := v[3].(int64); short == 0 {
			t.Fatalf("%s: no short answer among %v: the check does not reach libring's top-of-ring walk", g, v[0])
		}
		took = append(took, fmt.Sprintf("%d sets, %d short, %s", v[0], v[3], ms(time.Duration(v[4].(int64))*time.Microsecond)))
	}
	c := cloister.Default()
	if got := c.Siblings(); !slices.Equal(got, members) {
		t.Fatalf("ring members %v, want %v", got, members)
	}
	const goKeys = 500
	for _, n := range []int{1, 3, 6} {
		theirs := evalTerm(t, e, fmt.Sprintf("begin {Ms, T} = gen_server:call('Elixir.Cloister.Monitor', ring), "+
			"[cloister_member:replicas_in(T, length(Ms), cloister_member:key(I), %d) || I <- lists:seq(0, %d)] end", n, goKeys-1)).(List)
		if len(theirs) != goKeys {
			t.Fatalf("%s gave %d replica sets for %d keys", e.Name, len(theirs), goKeys)
		}
		for i, set := range theirs {
			mine, err := c.WhoisN("", key(i), n)
			if err != nil {
				t.Fatal(err)
			}
			if want := atomsOf(set); !slices.Equal(mine, want) {
				t.Fatalf("key %d %q, n = %d: Go WhoisN %v, %s key_to_nodes %v", i, key(i), n, mine, e.Name, want)
			}
		}
	}
	return "erl→Go {whois_n}: " + strings.Join(took, " / ") + fmt.Sprintf("; Go WhoisN = erl on %d keys × n = 1, 3, 6", goKeys)
}
