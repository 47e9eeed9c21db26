package health_test

import (
	"encoding/json"
	"io"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/cloister-go/cloister/health"
	"github.com/cloister-go/cloister/internal/httpserve"
	"github.com/cloister-go/cloister/listener"
)

func TestEndpoints(t *testing.T) {
	var state atomic.Value
	state.Store("rehashing")
	src := func() listener.Snapshot {
		return listener.Snapshot{Node: "a@127.0.0.1", State: listener.State(state.Load().(string)), Members: []string{"a@127.0.0.1"}, Consensus: 2}
	}
	s, err := httpserve.Start("127.0.0.1:0", health.Handler(src))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	get := func(path string) (int, string) {
		r, err := http.Get("http://" + s.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	if code, body := get("/readyz"); code != 503 || body != "rehashing\n" {
		t.Fatalf("readyz while rehashing: %d %q", code, body)
	}
	state.Store("ready")
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("readyz when ready: %d", code)
	}
	code, body := get("/status")
	var snap listener.Snapshot
	if code != 200 || json.Unmarshal([]byte(body), &snap) != nil || snap.Node != "a@127.0.0.1" || snap.Consensus != 2 {
		t.Fatalf("status %d %q", code, body)
	}
	// cloister stopped for good: liveness fails with it, not only readiness
	state.Store(string(listener.StateStopped))
	if code, body := get("/healthz"); code != 503 || body != "stopped\n" {
		t.Fatalf("healthz when stopped: %d %q", code, body)
	}
	if code, _ := get("/readyz"); code != 503 {
		t.Fatalf("readyz when stopped: %d", code)
	}
}
