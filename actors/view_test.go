package actors

import (
	"math"
	"testing"
	"time"

	"github.com/cloister-go/cloister/internal/listenerx"
	"github.com/cloister-go/cloister/listener"
	"github.com/cloister-go/cloister/ring"
)

// Published views keep the last RecentChanges state changes with their
// times, never rewrite a slice an earlier view holds, and carry each ring's
// shares when the ring matches the view's.
func TestViewExtras(t *testing.T) {
	var v viewExtras
	set := ring.NewSet()
	if err := set.Define("r", nil); err != nil {
		t.Fatal(err)
	}
	snap, _, _ := set.Update("r", []string{"a@h", "b@h", "c@h"})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	view := func(state listener.State, i int) listener.Snapshot {
		return v.annotate(listener.Snapshot{State: state, At: t0.Add(time.Duration(i) * time.Second),
			Rings: map[string]listener.Ring{"r": {Members: snap.Members(), Hash: snap.Hash()}}}, set)
	}
	first := view("assembling", 0)
	if len(first.Transitions) != 1 || first.Transitions[0] != (listener.Change{From: "down", To: "assembling", At: t0}) {
		t.Fatalf("first view: %+v", first.Transitions)
	}
	if again := view("assembling", 1); len(again.Transitions) != 1 {
		t.Fatalf("no change, still one transition: %+v", again.Transitions)
	}
	states := []listener.State{"rehashing", "ready"}
	for i := 2; i < 100; i++ {
		view(states[i%2], i)
	}
	last := view("rehashing", 100)
	if len(last.Transitions) != listenerx.RecentChanges {
		t.Fatalf("%d transitions kept, want %d", len(last.Transitions), listenerx.RecentChanges)
	}
	if end := last.Transitions[len(last.Transitions)-1]; end.From != "ready" || end.To != "rehashing" || !end.At.Equal(t0.Add(100*time.Second)) {
		t.Fatalf("latest transition %+v", end)
	}
	if first.Transitions[0].To != "assembling" || len(first.Transitions) != 1 {
		t.Fatalf("an earlier view's transitions changed: %+v", first.Transitions)
	}
	sh := last.Rings["r"].Shares
	sum := 0.0
	for _, s := range sh {
		sum += s
	}
	if len(sh) != 3 || math.Abs(sum-1) > 1e-9 {
		t.Fatalf("shares %v", sh)
	}
	// A view whose ring is not the current one gets no shares.
	stale := v.annotate(listener.Snapshot{State: "rehashing", Rings: map[string]listener.Ring{"r": {Hash: 1}}}, set)
	if stale.Rings["r"].Shares != nil {
		t.Fatalf("stale ring got shares %v", stale.Rings["r"].Shares)
	}
}
