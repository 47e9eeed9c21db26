package ring_test

import (
	"errors"
	"fmt"

	"github.com/cloister-go/cloister/ring"
)

func ExampleSet_Owner() {
	rings := ring.NewSet()
	if err := rings.Define("users", nil); err != nil { // nil: ring.Consistent()
		panic(err)
	}
	rings.Update("users", []string{"app@10.0.0.3", "app@10.0.0.1", "app@10.0.0.2"})
	for _, key := range []string{"alice", "bob", "carol"} {
		owner, err := rings.Owner("users", key)
		fmt.Println(key, owner, err)
	}
	_, err := rings.Owner("orders", "alice")
	fmt.Println(errors.Is(err, ring.ErrNoSuchRing), err)
	// Output:
	// alice app@10.0.0.3 <nil>
	// bob app@10.0.0.2 <nil>
	// carol app@10.0.0.3 <nil>
	// true cloister: no such ring: "orders"
}

func ExampleSet_Update() {
	rings := ring.NewSet()
	rings.Define("users", nil)
	snap, changed, _ := rings.Update("users", []string{"b@h", "a@h"})
	fmt.Println(snap.Epoch(), changed, snap.Members())
	// The same set, in another order and with a duplicate: nothing changes.
	snap, changed, _ = rings.Update("users", []string{"a@h", "b@h", "a@h"})
	fmt.Println(snap.Epoch(), changed)
	snap, changed, _ = rings.Update("users", nil)
	_, err := snap.Owner("alice")
	fmt.Println(snap.Epoch(), changed, err)
	// Output:
	// 1 true [a@h b@h]
	// 1 false
	// 2 true cloister: ring has no members: "users"
}

func ExampleDiffRanges() {
	rings := ring.NewSet()
	rings.Define("users", nil)
	before, _, _ := rings.Update("users", []string{"a@h", "b@h", "c@h"})
	after, _, _ := rings.Update("users", []string{"a@h", "b@h", "c@h", "d@h"})
	// The key-hash ranges d@h takes over: the keys whose KeyHash falls in
	// one of them are the keys it now owns.
	gained, lost := ring.DiffRanges(before, after, "d@h")
	moved := 0
	for _, key := range []string{"k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8"} {
		h, _ := after.KeyHash(key)
		for _, r := range gained {
			if r.Contains(h) {
				owner, _ := after.Owner(key)
				fmt.Println(key, "moves to", owner)
				moved++
			}
		}
	}
	fmt.Println(moved, "keys moved;", len(lost), "ranges lost")
	// Output:
	// k4 moves to d@h
	// k7 moves to d@h
	// 2 keys moved; 0 ranges lost
}

func ExampleView_Hash() {
	a, b := ring.NewSet(), ring.NewSet()
	a.Define("users", nil)
	b.Define("users", nil)
	sa, _, _ := a.Update("users", []string{"x@h", "y@h"})
	b.Update("users", []string{"y@h"})
	sb, _, _ := b.Update("users", []string{"y@h", "x@h"})
	// Different epochs, same members: the same Hash on both nodes.
	fmt.Println(sa.Epoch(), sb.Epoch(), sa.Hash() == sb.Hash())
	// Output:
	// 1 2 true
}
