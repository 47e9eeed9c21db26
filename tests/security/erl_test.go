package security

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cloister-go/cloister/cloistertest"
	"github.com/cloister-go/cloister/internal/erltest"
	"github.com/cloister-go/cloister/internal/localcluster"
	"github.com/cloister-go/cloister/listener"
)

// erlSetup starts two victims (consensus 2, with an additional module)
// and a cookie-holding erl node with the attacker module loaded, all on
// one epmd.
func erlSetup(t *testing.T) (*erltest.Node, []*cloistertest.Node, []string) {
	t.Helper()
	erltest.RequireErl(t, "the erl attacker")
	hh := cloistertest.NewT(t)
	env, err := erltest.NewEnv(hh.Cookie)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	// One epmd for both: the victims register with the erltest one.
	hh.EPMD.Stop()
	hh.EPMD = env.EPMD
	dir, err := env.Compile(erltest.Host(), "testdata/attacker.erl")
	if err != nil {
		t.Fatal(err)
	}
	names := localcluster.Names("evictim", 2)
	var vs []*cloistertest.Node
	for _, n := range names {
		v, err := hh.Start(cloistertest.Spec{Name: n, Sentry: names, Consensus: 2, Void: true})
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	for _, v := range vs {
		if e, err := v.WaitStarted(30 * time.Second); err != nil || e.Event != "started" {
			t.Fatalf("%s: %v %+v", v.Name, err, e)
		}
	}
	erl, err := env.StartNode("eattacker", erltest.NodeOptions{Paths: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	return erl, vs, names
}

// learnPid makes victim v probe the attacker and returns the prober's pid
// (its Monitor) as the shell prints it.
func learnPid(t *testing.T, erl *erltest.Node, v string) string {
	t.Helper()
	p, err := erl.EvalTimeout(fmt.Sprintf("attacker:learn_pid('%s', 10000)", v), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p, "<") {
		t.Fatalf("%s did not probe the attacker back: %s", v, p)
	}
	return p
}

// pidExpr is an Erlang expression for a pid of victim v (a pid printed by
// the shell cannot be read back).
func pidExpr(v string) string {
	return fmt.Sprintf("attacker:learn_pid('%s', 10000)", v)
}

// stillServing checks what the issue found broken after the attack: the
// victim runs, /healthz and /readyz answer 200, both victims are members,
// and the Monitor answers a BEAM caller.
func stillServing(t *testing.T, erl *erltest.Node, v *cloistertest.Node, names []string) {
	t.Helper()
	if !v.Running() {
		t.Fatalf("%s exited:\n%s", v.Name, localcluster.LastLines(v.LogTail(), 40))
	}
	if _, err := v.WaitStatus(20*time.Second, "ready with both victims", func(s listener.Snapshot) bool {
		return s.Ready() && reflect.DeepEqual(s.Members, names)
	}); err != nil {
		t.Fatalf("%v\n%s", err, localcluster.LastLines(v.LogTail(), 40))
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		r, err := http.Get("http://" + v.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: %d", v.Name, path, r.StatusCode)
		}
	}
	got, err := erl.EvalTimeout(fmt.Sprintf("is_map(attacker:call({'Elixir.Cloister.Monitor', '%s'}, state, 5000))", v.Name), 20*time.Second)
	if err != nil || got != "true" {
		t.Fatalf("%s Monitor after the attack: %q %v\n%s", v.Name, got, err, localcluster.LastLines(v.LogTail(), 40))
	}
}

// The recipe: an erl node with the cookie makes the victim probe
// it, then 12 times, 250 ms apart, links to each of the victim's pids
// 1000..1400 and exits with reason kill. Before, the Manager gave up
// (restart intensity), the Monitor was gone and /healthz still said ok.
// Now the links are refused (the attacker is no member) and cloister's
// processes ignore exit signals anyway: nothing restarts, no listener
// hears "stopped", and both stay ready together. exit/2 to every pid,
// after, changes nothing either.
func TestErlLinkAndKillCannotSwitchCloisterOff(t *testing.T) {
	erl, vs, names := erlSetup(t)
	before := map[string]string{}
	for _, v := range vs {
		before[v.Name] = learnPid(t, erl, v.Name)
	}
	start := time.Now()
	for _, v := range vs {
		expr := fmt.Sprintf("attacker:kill_range(%s, 1000, 1400, 12, 250)", pidExpr(v.Name))
		if _, err := erl.EvalTimeout(expr, 60*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("attack: 2 victims x 12 rounds x 401 pids in %s", time.Since(start).Round(time.Millisecond))
	// exit/2 needs no link: kill and a plain reason, to every pid
	// Each round ends with a call from the same Erlang process, answered
	// once the signals it sent before have arrived: the last ones are in
	// when the last call returns, whatever it answers.
	for _, v := range vs {
		for _, reason := range []string{"kill", "shutdown"} {
			expr := fmt.Sprintf("begin attacker:exit2_range(%s, 1000, 1400, %s), attacker:call({'Elixir.Cloister.Monitor', '%s'}, state, 10000), done end",
				pidExpr(v.Name), reason, v.Name)
			if _, err := erl.EvalTimeout(expr, 60*time.Second); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, v := range vs {
		stillServing(t, erl, v, names)
		if after := learnPid(t, erl, v.Name); after != before[v.Name] {
			t.Errorf("%s: the Monitor restarted (%s, was %s)", v.Name, after, before[v.Name])
		}
		for _, tr := range v.Transitions() {
			if strings.HasSuffix(tr, ">stopped") || strings.HasSuffix(tr, ">stopping") {
				t.Errorf("%s: the listener heard %s during the attack: %v", v.Name, tr, v.Transitions())
			}
		}
	}
}

// supervisor:which_children and friends from a BEAM node wait for ever
// for an answer; the Manager never gave one (Ergo's supervisor drops
// calls). Now it answers as an OTP supervisor, and refuses changes.
func TestErlSupervisorCalls(t *testing.T) {
	erl, vs, _ := erlSetup(t)
	mgr := fmt.Sprintf("{'Elixir.Cloister.Manager', '%s'}", vs[0].Name)
	sup := func(f, args string) string {
		t.Helper()
		got, err := erl.EvalTimeout(fmt.Sprintf("attacker:sup(%s, [%s], 10000)", f, args), 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if got == "timeout" {
			t.Fatalf("supervisor:%s did not answer in 10 s", f)
		}
		return got
	}
	got := sup("which_children", mgr)
	// the child started last first, as OTP lists them
	ids := []string{"'Elixir.Cloister.Monitor'", "'Elixir.Cloister'", "'Elixir.Cloister.Node'", "'Void'"}
	last := len(got)
	for _, id := range ids {
		i := strings.Index(got, "{"+id+",<")
		if i < 0 || i > last {
			t.Fatalf("which_children: %s not listed (in order) with a pid: %s", id, got)
		}
		last = i
	}
	if !strings.Contains(got, "{'Elixir.Cloister',<") || !strings.Contains(got, ">,supervisor,['Elixir.Cloister']}") {
		t.Fatalf("which_children: the dynamic supervisor is not a supervisor: %s", got)
	}
	if got := sup("count_children", mgr); got != "[{specs,4},{active,4},{supervisors,1},{workers,3}]" {
		t.Fatalf("count_children: %s", got)
	}
	if got := sup("get_childspec", mgr+", 'Elixir.Cloister.Monitor'"); !strings.Contains(got, "restart => permanent") || !strings.HasPrefix(got, "{ok,#{") {
		t.Fatalf("get_childspec: %s", got)
	}
	if got := sup("get_childspec", mgr+", nope"); got != "{error,not_found}" {
		t.Fatalf("get_childspec nope: %s", got)
	}
	for _, f := range []string{"terminate_child", "restart_child", "delete_child"} {
		if got := sup(f, mgr+", 'Elixir.Cloister.Monitor'"); got != "{error,refused}" {
			t.Fatalf("%s: %s", f, got)
		}
	}
	if s, err := vs[0].Status(); err != nil || !s.Ready() {
		t.Fatalf("after the calls: %v %v", s, err)
	}
}
