package security

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cloister-go/cloister/cloistertest"
	"github.com/cloister-go/cloister/internal/localcluster"
	"github.com/cloister-go/cloister/internal/nodetest"
	"github.com/cloister-go/cloister/internal/wire/ergonode"
	"github.com/cloister-go/cloister/listener"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
)

// If cloister stops anyway, everything says so. An additional module is
// the application's own process: an Ergo peer with the cookie can kill it
// with a bare {} (Ergo's gen.Server dies on it; only cloister's own
// processes and BEAM peers' frames are filtered). Each death is a restart
// of the Manager; more than 10 in 5 s make it give up. Before, the node
// went on answering /healthz 200 and Whois from the last ring; now
// /healthz and /readyz fail, /status says stopped with no members, Whois
// fails, and the listener heard stopped.
func TestStoppedCloisterSaysSo(t *testing.T) {
	hh := cloistertest.NewT(t)
	name := "stops@127.0.0.1"
	v, err := hh.Start(cloistertest.Spec{Name: name, Sentry: []string{name}, Consensus: 1, Void: true})
	if err != nil {
		t.Fatal(err)
	}
	if e, err := v.WaitStarted(30 * time.Second); err != nil || e.Event != "started" {
		t.Fatalf("%v %+v", err, e)
	}
	if o, err := v.Whois("", "k"); err != nil || o != name {
		t.Fatalf("whois before: %q %v", o, err)
	}
	n, err := ergonode.Start("killer@127.0.0.1", ergonode.Options{Cookie: hh.Cookie, EPMDPort: hh.EPMD.Port, Logf: func(string, ...interface{}) {}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	p, err := n.Spawn("", gen.ProcessOptions{}, &collector{waiting: map[etf.Ref]chan etf.Term{}})
	if err != nil {
		t.Fatal(err)
	}
	void := gen.ProcessID{Name: nodetest.VoidName, Node: name}
	sent := 0
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if s, err := v.Status(); err == nil && s.State == "stopped" {
			break
		}
		if err := p.Send(void, etf.Tuple{}); err == nil {
			sent++
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%d {} sent to the Void", sent)
	s, err := v.WaitStatus(10*time.Second, "stopped", func(s listener.Snapshot) bool { return s.State == "stopped" })
	if err != nil {
		t.Fatalf("%v\n%s", err, localcluster.LastLines(v.LogTail(), 30))
	}
	if len(s.Members) != 0 || s.Flags.Alive {
		t.Fatalf("stopped snapshot: %+v", s)
	}
	if !v.Running() {
		t.Fatal("the node process exited (it is the embedding program's choice, not cloister's)")
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		r, err := http.Get("http://" + v.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("%s: %d after cloister stopped", path, r.StatusCode)
		}
	}
	if o, err := v.Whois("", "k"); err == nil {
		t.Fatalf("whois after stop answered %q", o)
	}
	if _, err := v.WaitFor(10*time.Second, "the listener hears stopped", func(e cloistertest.NodeEvent) bool {
		return e.Event == "state" && e.To == "stopped"
	}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(v.LogTail(), "giving up: cloister is stopped on this node") {
		t.Fatalf("the log does not say why:\n%s", localcluster.LastLines(v.LogTail(), 30))
	}
}
