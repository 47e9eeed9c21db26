package listenerx_test

import (
	"sync"
	"testing"

	"github.com/cloister-go/cloister/internal/listenerx"
	"github.com/cloister-go/cloister/listener"
)

type recorder struct {
	mu  sync.Mutex
	got []string
}

func (r *recorder) OnStateChange(from, to listener.State, s listener.Snapshot) {
	r.mu.Lock()
	r.got = append(r.got, string(from)+">"+string(to))
	r.mu.Unlock()
}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

func TestMultiIsolatesPanics(t *testing.T) {
	r := &recorder{}
	m := listenerx.Multi{listener.Func(func(listener.State, listener.State, listener.Snapshot) { panic("x") }), r}
	m.OnStateChange("a", "b", listener.Snapshot{})
	if len(r.list()) != 1 {
		t.Fatal("second listener skipped after the first panicked")
	}
}
