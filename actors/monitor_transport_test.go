package actors

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// A failed dial tells whether the peer's process is gone only when asked:
// finding out costs a second EPMD lookup, which only a member in its flap
// grace needs (core.AwaitsGone).
func TestConnectChecksGoneOnlyWhenAsked(t *testing.T) {
	tr := newErgoTransport(testNode, nil, MonitorName, 2*time.Second)
	nobody := fmt.Sprintf("nobody_%d@127.0.0.1", os.Getpid())
	for _, tc := range []struct {
		checkGone, want bool
	}{{false, false}, {true, true}} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		gone, err := tr.Connect(ctx, nobody, tc.checkGone)
		cancel()
		if err == nil {
			t.Fatalf("connected to %s, which is not registered", nobody)
		}
		if gone != tc.want {
			t.Fatalf("checkGone %v: gone %v, want %v (%v)", tc.checkGone, gone, tc.want, err)
		}
	}
}
