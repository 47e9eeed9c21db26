package ergonode_test

import (
	"os"
	"testing"

	"github.com/cloister-go/cloister/internal/testenv"
	"github.com/cloister-go/cloister/internal/wire/ergonode"
	"github.com/ergo-services/ergo/etf"
)

var epmd *testenv.EPMD

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	var err error
	if epmd, err = testenv.StartEPMD(); err != nil {
		panic(err)
	}
	code := m.Run()
	epmd.Stop()
	os.Exit(code)
}

func TestNodeOptionsAreSafe(t *testing.T) {
	o := ergonode.NodeOptions(ergonode.Options{EPMDPort: epmd.Port})
	if !o.System.DisableAnonMetrics {
		t.Fatal("anonymous metrics must be off")
	}
	if o.Flags.EnableRemoteSpawn {
		t.Fatal("remote spawn must be off")
	}
	if !o.Flags.Enable {
		t.Fatal("flags must be customised (Enable), or Ergo replaces them with its defaults")
	}
	if o.Handshake == nil || o.Proto == nil || o.Registrar == nil {
		t.Fatal("handshake, proto and registrar must be set explicitly")
	}
	if len(o.Listeners) != 1 {
		t.Fatalf("want exactly one listener, got %d", len(o.Listeners))
	}
}

func TestStartRejectsMalformedName(t *testing.T) {
	for _, name := range []string{"", "noat", "a@b@c", "@host", "name@"} {
		if _, err := ergonode.Start(name, ergonode.Options{EPMDPort: epmd.Port}); err == nil {
			t.Errorf("name %q: want error", name)
		}
	}
}

func TestStartAndConnect(t *testing.T) {
	n, err := ergonode.Start("ergonode_a@127.0.0.1", ergonode.Options{EPMDPort: epmd.Port, Cookie: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	if !n.IsAlive() {
		t.Fatal("node not alive")
	}
	// The registrar is the private epmd: resolving our own name must work.
	if _, err := n.Resolve(n.Name()); err != nil {
		t.Fatalf("resolve own name via private epmd: %v", err)
	}
	// Ergo's system application (anonymous metrics and a racy minute
	// statistics job) is not started; its erlang application is.
	if p := n.ProcessByName("system_metrics"); p != nil {
		t.Fatal("system_metrics runs: the node was started with Ergo's system application")
	}
	for _, name := range []string{"net_kernel", "global_name_server"} {
		if n.ProcessByName(name) == nil {
			t.Errorf("%s is not running: Ergo's erlang application is missing", name)
		}
	}
	for _, a := range n.WhichApplications() {
		if a.Name == "system_app" {
			t.Errorf("application %s is running", a.Name)
		}
	}
}

func TestCheckSendable(t *testing.T) {
	bad := []interface{}{nil, etf.List{}, []interface{}{}, []string{}, (*int)(nil)}
	for _, b := range bad {
		if ergonode.CheckSendable(b) == nil {
			t.Errorf("%#v: want ErrEmptyTerm", b)
		}
	}
	good := []interface{}{etf.List{etf.List{}}, []byte{}, "", etf.Atom("ok"), 0, etf.Tuple{}}
	for _, g := range good {
		if err := ergonode.CheckSendable(g); err != nil {
			t.Errorf("%#v: %v", g, err)
		}
	}
}
