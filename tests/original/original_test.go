// Package original ports the Elixir cloister's own test suite (its test/cloister_test.exs):
// five nodes cloister_0..4@127.0.0.1, each running cloister with the same
// sentries and consensus 1 and the Void server. This test process is
// cloister_0; the other four are separate OS processes.
package original

import (
	"fmt"
	"log/slog"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/cloister-go/cloister"
	"github.com/cloister-go/cloister/cloistertest"
	"github.com/cloister-go/cloister/internal/clusterstate"
	"github.com/cloister-go/cloister/internal/localcluster"
	"github.com/cloister-go/cloister/internal/nodetest"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/node"
)

var (
	h     *cloistertest.Harness
	local node.Node
	names []string
	me    *collector
	meP   gen.Process
)

// collector is "me": the process the Void servers send their pongs to.
type collector struct {
	gen.Server
	got chan etf.Term
}

func (c *collector) HandleInfo(p *gen.ServerProcess, m etf.Term) gen.ServerStatus {
	c.got <- m
	return gen.ServerStatusOK
}

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "original suite setup:", err)
		code = 1
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	var err error
	if h, err = cloistertest.New(); err != nil {
		return 1, err
	}
	defer h.Close()
	names = localcluster.Names("cloister", 5)
	for _, n := range names[1:] {
		if _, err := h.Start(cloistertest.Spec{Name: n, Sentry: names, Consensus: 1, Void: true}); err != nil {
			return 1, err
		}
	}
	opts := cloister.DefaultOptions()
	opts.Sentry = names
	opts.AdditionalModules = []cloister.Child{nodetest.VoidChild()}
	opts.Logger = slog.New(slog.DiscardHandler)
	c, err := cloister.StartNode(names[0], opts, cloister.NodeOptions{Cookie: h.Cookie, EPMDPort: h.EPMD.Port})
	if err != nil {
		return 1, err
	}
	defer c.Stop()
	local = c.Node()
	me = &collector{got: make(chan etf.Term, 100)}
	if meP, err = local.Spawn("", gen.ProcessOptions{MailboxSize: 1000}, me); err != nil {
		return 1, err
	}
	// Every node sees all five before the suite starts.
	deadline := time.Now().Add(30 * time.Second)
	for len(cloister.Siblings()) != 5 {
		if time.Now().After(deadline) {
			return 1, fmt.Errorf("cloister_0 sees %v, want 5 members", cloister.Siblings())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, n := range names[1:] {
		if _, err := h.Node(n).WaitStatus(30*time.Second, "5 members", func(s cloister.Snapshot) bool { return len(s.Members) == 5 }); err != nil {
			return 1, err
		}
	}
	return m.Run(), nil
}

// expect waits up to 5 s per expected pong, then checks nothing more comes.
func expect(t *testing.T, n int) []string {
	t.Helper()
	var from []string
	for i := 0; i < n; i++ {
		select {
		case m := <-me.got:
			tup, ok := m.(etf.Tuple)
			if !ok || len(tup) != 2 || tup[0] != etf.Atom("pong") {
				t.Fatalf("unexpected message %#v", m)
			}
			from = append(from, string(tup[1].(etf.Pid).Node))
		case <-time.After(5 * time.Second):
			t.Fatalf("got %d pongs (%v), want %d", len(from), from, n)
		}
	}
	select {
	case m := <-me.got:
		t.Fatalf("mailbox not empty after %d pongs: %#v", n, m)
	case <-time.After(300 * time.Millisecond):
	}
	sort.Strings(from)
	return from
}

func TestMulticasts(t *testing.T) {
	if err := cloister.Multicast(nil, nodetest.VoidName, etf.Tuple{etf.Atom("ping"), meP.Self()}); err != nil {
		t.Fatal(err)
	}
	if got := expect(t, 5); fmt.Sprint(got) != fmt.Sprint(names) {
		t.Fatalf("pongs from %v", got)
	}
}

func TestMulticalls(t *testing.T) {
	res, err := cloister.Multicall(nil, nodetest.VoidName, etf.Tuple{etf.Atom("ping"), meP.Self()}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 5 {
		t.Fatalf("%d results", len(res))
	}
	for _, r := range res {
		if r.Err != nil || r.Reply != etf.Atom("ok") {
			t.Fatalf("%s: reply %v err %v", r.Node, r.Reply, r.Err)
		}
	}
	expect(t, 5)
}

func TestMulticastsToOne(t *testing.T) {
	ping := etf.Tuple{etf.Atom("ping_one"), meP.Self()}
	if err := cloister.Multicast(nil, nodetest.VoidName, ping); err != nil {
		t.Fatal(err)
	}
	got := expect(t, 1)
	owner, err := cloister.Default().WhoisTerm("", ping)
	if err != nil || got[0] != owner {
		t.Fatalf("pong from %v, owner %q (%v)", got, owner, err)
	}
}

func TestMulticallsToOne(t *testing.T) {
	ping := etf.Tuple{etf.Atom("ping_one"), meP.Self()}
	res, err := cloister.Multicall(nil, nodetest.VoidName, ping, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatalf("%s: %v", r.Node, r.Err)
		}
	}
	expect(t, 1)
}

func TestGroups(t *testing.T) {
	s := cloister.State()
	ring := s.Rings["cloister"]
	if fmt.Sprint(ring.Members) != fmt.Sprint(names) {
		t.Fatalf("ring members %v", ring.Members)
	}
	cluster := append([]string{s.Node}, s.Connected...)
	sort.Strings(cluster)
	if fmt.Sprint(cluster) != fmt.Sprint(names) {
		t.Fatalf("cluster members %v", cluster)
	}
	// Every node agrees on the ring.
	for _, n := range names[1:] {
		st, err := h.Node(n).Status()
		if err != nil {
			t.Fatal(err)
		}
		if st.Rings["cloister"].Hash != ring.Hash {
			t.Fatalf("%s ring hash differs: %v vs %v", n, st.Rings["cloister"], ring)
		}
	}
}

// Garbage, including the bare {} that kills a plain Ergo gen.Server inside
// its own loop, leaves every Monitor and Node actor alive and answering.
func TestGarbageDoesNotKillOurProcesses(t *testing.T) {
	// The garbage goes from a process of its own, so that what its calls
	// answer, whenever it comes, never reaches "me" and the pongs below.
	junk := &collector{got: make(chan etf.Term, 100)}
	junkP, err := local.Spawn("", gen.ProcessOptions{MailboxSize: 1000}, junk)
	if err != nil {
		t.Fatal(err)
	}
	defer junkP.Kill()
	garbage := []etf.Term{etf.Tuple{}, etf.Atom("junk"), etf.Tuple{etf.Atom("$gen_call")}, etf.List{etf.Tuple{}},
		etf.Tuple{etf.Atom("$gen_call"), etf.Tuple{junkP.Self(), local.MakeRef()}, etf.Tuple{}}, 42, []byte("x")}
	for _, n := range names {
		for _, name := range []string{"Elixir.Cloister.Monitor", "Elixir.Cloister.Node"} {
			for _, g := range garbage {
				if err := junkP.Send(gen.ProcessID{Name: name, Node: n}, g); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	res, err := cloister.Multicall(nil, "Elixir.Cloister.Monitor", etf.Atom("state"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatalf("%s monitor: %v", r.Node, r.Err)
		}
	}
	res, err = cloister.Multicall(nil, nodetest.VoidName, etf.Tuple{etf.Atom("ping"), meP.Self()}, 5*time.Second)
	if err != nil || len(res) != 5 {
		t.Fatal(err, res)
	}
	expect(t, 5)
	if len(cloister.Siblings()) != 5 {
		t.Fatalf("members after garbage: %v", cloister.Siblings())
	}
}

// Erlang's gen_server:multi_call sends {'$gen_call', {Pid, {Ref, Node}}, Req}
// and wants {{Ref, Node}, Reply}; Ergo alone never answers it.
func TestMonitorAnswersMultiCallForm(t *testing.T) {
	tag := etf.Tuple{local.MakeRef(), etf.Atom(names[1])}
	req := etf.Tuple{etf.Atom("$gen_call"), etf.Tuple{meP.Self(), tag}, etf.Atom("state")}
	if err := meP.Send(gen.ProcessID{Name: "Elixir.Cloister.Monitor", Node: names[1]}, req); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-me.got:
		tup, ok := m.(etf.Tuple)
		if !ok || len(tup) != 2 {
			t.Fatalf("reply %#v", m)
		}
		if got, ok := tup[0].(etf.Tuple); !ok || len(got) != 2 || got[0] != tag[0] || got[1] != tag[1] {
			t.Fatalf("tag %#v, want %#v", tup[0], tag)
		}
		app, members, ok := clusterstate.ParseState(tup[1])
		if !ok || app != "cloister" || len(members) != 5 {
			t.Fatalf("state %#v", tup[1])
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no multi_call answer")
	}
}
