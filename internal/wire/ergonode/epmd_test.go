package ergonode_test

import (
	"testing"

	cepmd "github.com/cloister-go/cloister/internal/wire/epmd"
	"github.com/cloister-go/cloister/internal/wire/ergonode"
	"github.com/ergo-services/ergo/node"
)

// Every node speaks EPMD through cloister's own client, never Ergo's
// registrar (whose server and client trust lengths from the network).
func TestRegistrarIsOurs(t *testing.T) {
	for _, o := range []ergonode.Options{{}, {EmbeddedEPMD: true}, {EPMDClientOnly: true, EPMDPort: 1234}} {
		reg := ergonode.NodeOptions(o).Registrar
		// Under the gate's routes (dials named, TLS enforced).
		if u, ok := reg.(interface{ Unwrap() node.Registrar }); ok {
			reg = u.Unwrap()
		}
		r, ok := reg.(*cepmd.Registrar)
		if !ok {
			t.Fatalf("%+v: registrar %T, want *cepmd.Registrar", o, reg)
		}
		if o.EPMDClientOnly != (r.Mode == cepmd.ClientOnly) || o.EmbeddedEPMD != (r.ServeHost != nil && *r.ServeHost == "") {
			t.Fatalf("%+v: registrar %+v", o, r)
		}
	}
}

func TestEPMDPortFollowsTheEnvironment(t *testing.T) {
	t.Setenv("ERL_EPMD_PORT", "24371")
	if p, err := ergonode.EPMDPort(ergonode.Options{}); p != 24371 || err != nil {
		t.Fatalf("%d %v", p, err)
	}
	if p, err := ergonode.EPMDPort(ergonode.Options{EPMDPort: 5}); p != 5 || err != nil {
		t.Fatalf("explicit port: %d %v", p, err)
	}
	t.Setenv("ERL_EPMD_PORT", "nope")
	if _, err := ergonode.Start("x@127.0.0.1", ergonode.Options{}); err == nil {
		t.Fatal("a node started with ERL_EPMD_PORT=nope")
	}
}
