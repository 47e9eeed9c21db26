package ergonode_test

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/ergo-services/ergo/node"

	"github.com/cloister-go/cloister/internal/erltest"
	"github.com/cloister-go/cloister/internal/testenv"
	"github.com/cloister-go/cloister/internal/wire/ergonode"
)

// A dial a BEAM node refuses because it already has a link to this node's
// name (here: another node of that name, as after a restart the peer has
// not noticed) says so, and a dial with the wrong cookie says that: before,
// the first was Ergo's bare "handshake negotiation failed" and nothing
// told the two apart for a user reading the log.
func TestRefusedDialsSayWhy(t *testing.T) {
	if _, err := exec.LookPath("erl"); err != nil {
		t.Skip("no erl")
	}
	env, err := erltest.NewEnv("right")
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	x, err := env.StartNode("refusing", erltest.NodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := func(name, cookie string, epmdPort uint16) (node.Node, *syncBuf) {
		t.Helper()
		logs := &syncBuf{}
		n, err := ergonode.Start(name, ergonode.Options{EPMDPort: epmdPort, Cookie: cookie,
			Logf: func(f string, a ...interface{}) { fmt.Fprintf(logs, f+"\n", a...) }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Stop)
		return n, logs
	}
	first, _ := start("refused_b@127.0.0.1", "right", env.EPMD.Port)
	if err := ergonode.Connect(first, x.Name); err != nil {
		t.Fatal(err)
	}
	route, err := first.Resolve(x.Name)
	if err != nil {
		t.Fatal(err)
	}
	// The same name again, registered with an EPMD of its own, dials the
	// BEAM node, which still holds the first one's link.
	other, err := testenv.StartEPMD()
	if err != nil {
		t.Fatal(err)
	}
	defer other.Stop()
	again, logs := start("refused_b@127.0.0.1", "right", other.Port)
	if err := again.AddStaticRoute(x.Name, "127.0.0.1", route.Port, node.RouteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = ergonode.Connect(again, x.Name)
	if !errors.Is(err, ergonode.ErrAlreadyConnected) || errors.Is(err, ergonode.ErrCookieMismatch) {
		t.Fatalf("dial while the peer holds a link to this name: %v", err)
	}
	if !logs.has("already has a link to this node", "status alive", x.Name) || logs.has("cookie") {
		t.Fatalf("log:\n%s", strings.Join(logs.lines(), "\n"))
	}

	wrong, logs := start("refused_w@127.0.0.1", "wrong", env.EPMD.Port)
	err = ergonode.Connect(wrong, x.Name)
	if !errors.Is(err, ergonode.ErrCookieMismatch) {
		t.Fatalf("dial with the wrong cookie: %v", err)
	}
	if !logs.has("distribution cookie mismatch", x.Name) || logs.has("already has a link") {
		t.Fatalf("log:\n%s", strings.Join(logs.lines(), "\n"))
	}
}
