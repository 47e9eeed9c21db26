package main

import (
	"slices"
	"testing"

	"github.com/cloister-go/cloister/ring"
)

func ringOf(tb testing.TB, members ...string) *ring.View {
	tb.Helper()
	s := ring.NewSet()
	if err := s.Define("r", nil); err != nil {
		tb.Fatal(err)
	}
	sn, _, err := s.Update("r", members)
	if err != nil {
		tb.Fatal(err)
	}
	return sn
}

var three = []string{"a@127.0.0.1", "b@127.0.0.1", "c@127.0.0.1"}

// The keys read out of the ranges are exactly the keys diffOwners finds by
// asking the owner of every key, on a leave and on a join.
func TestRangesFindTheKeysTheScanFinds(t *testing.T) {
	keys := makeKeys(200_000)
	before, after := ringOf(t, three...), ringOf(t, three[:2]...)
	ix, err := newHashIndex(before, keys)
	if err != nil {
		t.Fatal(err)
	}
	for _, pair := range [][2]*ring.View{{before, after}, {after, before}, {nil, before}} {
		for _, self := range three[:2] {
			g, l := ring.DiffRanges(pair[0], pair[1], self)
			gained, lost := diffOwners(pair[0], pair[1], keys)
			got, want := ix.in(nil, g), gained[self]
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("%s gained %d keys by ranges, %d by the scan", self, len(got), len(want))
			}
			got, want = ix.in(nil, l), lost[self]
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("%s lost %d keys by ranges, %d by the scan", self, len(got), len(want))
			}
		}
	}
}

// 1M keys, 3 members, one leaves: what a survivor does to find the keys
// it gained. The scan asks the owner of every key in both rings; the
// ranges are one walk of the rings' points and a binary search per range.
func BenchmarkMovedKeys1M(b *testing.B) {
	keys := makeKeys(1_000_000)
	before, after := ringOf(b, three...), ringOf(b, three[:2]...)
	self := three[0]
	b.Run("scan", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			gained, _ := diffOwners(before, after, keys)
			if len(gained[self]) == 0 {
				b.Fatal("nothing gained")
			}
		}
	})
	ix, err := newHashIndex(before, keys)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("ranges", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			g, _ := ring.DiffRanges(before, after, self)
			if len(ix.in(nil, g)) == 0 {
				b.Fatal("nothing gained")
			}
		}
	})
	b.Run("index-build-once", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := newHashIndex(before, keys); err != nil {
				b.Fatal(err)
			}
		}
	})
}
