package metrics_test

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ergo-services/ergo/etf"

	"github.com/cloister-go/cloister"
	"github.com/cloister-go/cloister/cloistertest"
	"github.com/cloister-go/cloister/health"
	"github.com/cloister-go/cloister/internal/httpserve"
	"github.com/cloister-go/cloister/internal/nodetest"
	"github.com/cloister-go/cloister/metrics"
)

// scrape reads a /metrics page: "name{labels}" -> value, as printed.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	r, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer r.Body.Close()
	if r.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, r.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(r.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// scrapeUntil scrapes until ok holds or the timeout passes, and returns
// the last scrape: for figures updated off the state machine's goroutine
// (listener deliveries are timed when the listener returns, which can be
// after the state it reported is visible).
func scrapeUntil(t *testing.T, url string, timeout time.Duration, ok func(map[string]float64) bool) map[string]float64 {
	t.Helper()
	end := time.Now().Add(timeout)
	for {
		got := scrape(t, url)
		if ok(got) || time.Now().After(end) {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func expect(t *testing.T, got map[string]float64, key string, v float64) {
	t.Helper()
	if g, ok := got[key]; !ok || g != v {
		t.Errorf("%s = %v (present %v), want %v", key, g, ok, v)
	}
}

// local is the one Ergo node of this test binary (Ergo races with several), started
// by the first test that needs it and shared by -count repetitions.
var local struct {
	once sync.Once
	h    *cloistertest.Harness
	c    *cloister.Cluster
	url  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	// The node is not stopped: Ergo's application stop races with its own
	// process exits under -race; it ends with the test binary. Its epmd
	// is stopped here.
	if local.h != nil {
		local.h.Close()
	}
	os.Exit(code)
}

// startLocal starts a cloister node in this process, instrumented and
// served as `cloister node -metrics` does, and returns its /metrics URL.
func startLocal(t *testing.T) (*cloister.Cluster, string) {
	t.Helper()
	local.once.Do(func() {
		if local.h, local.err = cloistertest.New(); local.err != nil { // for its private epmd
			return
		}
		col := metrics.New()
		opts := cloister.DefaultOptions()
		opts.OTPApp, opts.Ring = "metrics_test", "" // the ring is named after the app
		col.Instrument(&opts)
		name := fmt.Sprintf("metrics_test_%d@127.0.0.1", os.Getpid())
		n, err := cloister.StartNode(name, opts, cloister.NodeOptions{Cookie: "metrics", EPMDPort: local.h.EPMD.Port})
		if err != nil {
			local.err = err
			return
		}
		local.c = n
		col.SetSource(local.c.State)
		mux := health.Handler(local.c.State)
		mux.Handle("/metrics", col.Handler())
		srv, err := httpserve.Start("127.0.0.1:0", mux)
		if err != nil {
			local.err = err
			return
		}
		local.url = "http://" + srv.Addr() + "/metrics"
	})
	if local.err != nil {
		t.Fatal(local.err)
	}
	return local.c, local.url
}

// TestNodeServesMetrics checks an in-process node's page, and that fan-out
// outcomes are counted by kind.
func TestNodeServesMetrics(t *testing.T) {
	c, url := startLocal(t)
	got := scrape(t, url)
	expect(t, got, "cloister_members", 1)
	expect(t, got, `cloister_state{state="ready"}`, 1)
	expect(t, got, `cloister_state{state="rehashing"}`, 0)
	expect(t, got, `cloister_ring_epoch{ring="metrics_test"}`, 1)
	expect(t, got, "cloister_rehashes_total", 1)
	expect(t, got, `cloister_transitions_total{from="rehashing",to="ready"}`, 1)
	if got["go_goroutines"] == 0 {
		t.Error("the Go runtime collector is not served")
	}
	before := got

	// The Monitor answers a 'state' call: one ok. Nothing is registered
	// as "nobody": one no_such_process. A function that fails: one remote.
	res, err := c.Multicall(nil, "Elixir.Cloister.Monitor", etf.Atom("state"), time.Second)
	if err != nil || len(res) != 1 || res[0].Err != nil {
		t.Fatalf("multicall to the Monitor: %v %+v", err, res)
	}
	res, err = c.Multicall(nil, "nobody", etf.Atom("hi"), time.Second)
	if err != nil || len(res) != 1 || res[0].Err == nil {
		t.Fatalf("multicall to nobody: %v %+v", err, res)
	}
	_ = c.RegisterFunc("fail", func(etf.List) (etf.Term, error) { return nil, fmt.Errorf("deliberate") }) // again with -count
	if res, err = c.Multiapply(nil, "fail", nil, time.Second); err != nil || len(res) != 1 || res[0].Err == nil {
		t.Fatalf("multiapply fail: %v %+v", err, res)
	}

	got = scrape(t, url)
	for _, k := range []string{
		`cloister_fanout_results_total{op="multicall",outcome="ok"}`,
		`cloister_fanout_results_total{op="multicall",outcome="no_such_process"}`,
		`cloister_fanout_results_total{op="multiapply",outcome="remote"}`,
	} {
		if d := got[k] - before[k]; d != 1 {
			t.Errorf("%s moved by %v, want 1", k, d)
		}
	}
	if d := got[`cloister_fanout_results_total{op="multiapply",outcome="ok"}`] - before[`cloister_fanout_results_total{op="multiapply",outcome="ok"}`]; d != 0 {
		t.Errorf("multiapply ok moved by %v, want 0", d)
	}
	expect(t, got, "cloister_members", 1)
}

// TestNodeCommandServesMetrics starts `cloister node -metrics` as a process
// and reads its /metrics while it is alone and after a second member joins.
func TestNodeCommandServesMetrics(t *testing.T) {
	h := cloistertest.NewT(t)
	a, b := "metrics_a@127.0.0.1", "metrics_b@127.0.0.1"
	na, err := h.Start(cloistertest.Spec{Name: a, Args: []string{"-metrics"}})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := na.WaitStarted(30 * time.Second); err != nil || ev.Event != "started" {
		t.Fatalf("node a: %v %+v", err, ev)
	}
	ev, err := na.WaitFor(5*time.Second, "listening", func(e cloistertest.NodeEvent) bool { return e.Event == "listening" })
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ev.HTTP + "/metrics"
	got := scrape(t, url)
	expect(t, got, "cloister_members", 1)
	expect(t, got, `cloister_state{state="ready"}`, 1)
	expect(t, got, "cloister_rehashes_total", 1)

	// b lists a as its sentry: both go through rehashing to 2 members.
	nb, err := h.Start(cloistertest.Spec{Name: b, Sentry: []string{a, b}, Consensus: 2})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := nb.WaitStarted(30 * time.Second); err != nil || ev.Event != "started" {
		t.Fatalf("node b: %v %+v", err, ev)
	}
	if _, err := na.WaitStatus(10*time.Second, "2 members ready", func(s cloister.Snapshot) bool {
		return s.Ready() && len(s.Members) == 2
	}); err != nil {
		t.Fatal(err)
	}
	got = scrapeUntil(t, url, 10*time.Second, func(m map[string]float64) bool {
		return m["cloister_listener_duration_seconds_count"] >= 4
	})
	expect(t, got, "cloister_members", 2)
	expect(t, got, `cloister_state{state="ready"}`, 1)
	expect(t, got, `cloister_ring_members{ring="cloister"}`, 2)
	expect(t, got, `cloister_ring_epoch{ring="cloister"}`, 2)
	expect(t, got, "cloister_rehashes_total", 2)
	expect(t, got, `cloister_transitions_total{from="ready",to="rehashing"}`, 1)
	if got["cloister_rehash_duration_seconds_count"] != 2 {
		t.Errorf("rehash durations observed: %v, want 2", got["cloister_rehash_duration_seconds_count"])
	}
	if got["cloister_listener_duration_seconds_count"] < 4 {
		t.Errorf("listener deliveries timed: %v, want ≥ 4", got["cloister_listener_duration_seconds_count"])
	}

	// b killed: a's heartbeat or node-down takes it out again.
	nb.Kill()
	if _, err := na.WaitStatus(15*time.Second, "1 member", func(s cloister.Snapshot) bool {
		return s.Ready() && len(s.Members) == 1
	}); err != nil {
		t.Fatal(err)
	}
	got = scrapeUntil(t, url, 10*time.Second, func(m map[string]float64) bool {
		return m["cloister_rehashes_total"] >= 3
	})
	expect(t, got, "cloister_members", 1)
	expect(t, got, "cloister_rehashes_total", 3)
	removals := 0.0
	for k, v := range got {
		if strings.HasPrefix(k, "cloister_member_removals_total{") {
			removals += v
		}
	}
	if removals != 1 {
		t.Errorf("the killed member's removal counted %v times, want once", removals)
	}
}

// TestNodeCommandRefusesMetricsWithoutHTTP: metrics are served on the
// health endpoint, so -metrics alone is a usage error (exit status 2).
func TestNodeCommandRefusesMetricsWithoutHTTP(t *testing.T) {
	bin, err := nodetest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "node", "-name", "metrics_nohttp@127.0.0.1", "-metrics")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("exit: %v, want status 2; output:\n%s", err, out)
	}
	if !strings.Contains(string(out), "-metrics needs -http") {
		t.Errorf("output does not say why:\n%s", out)
	}
}
