package actors

import "testing"

// Options.KeepFreedMemory reaches the cluster's memory return, which then
// never arms; by default a running view arms it and the next view that
// does not run disarms it.
func TestKeepFreedMemoryNeverArmsTheReturn(t *testing.T) {
	for _, keep := range []bool{false, true} {
		o := DefaultOptions()
		o.OTPApp = "memtest"
		o.KeepFreedMemory = keep
		b, err := NewManager(o)
		if err != nil {
			t.Fatal(err)
		}
		r := &b.(*manager).cluster.mem
		r.changed(true)
		r.mu.Lock()
		armed := r.t != nil
		r.mu.Unlock()
		if armed == keep {
			t.Fatalf("KeepFreedMemory %v: armed after a running view = %v", keep, armed)
		}
		r.changed(false)
		r.mu.Lock()
		armed = r.t != nil
		r.mu.Unlock()
		if armed {
			t.Fatalf("KeepFreedMemory %v: still armed after a stopped view", keep)
		}
	}
}
