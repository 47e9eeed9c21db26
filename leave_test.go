package cloister

import (
	"context"
	"errors"
	"testing"
)

func TestJoinRefusesBadNamesAndLeaveNeedsACluster(t *testing.T) {
	c, err := New(DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "noat", "@host", "name@", "a@b@c", "sp ace@h", "tab\t@h"} {
		if err := c.Join(bad); !errors.Is(err, ErrBadNode) {
			t.Errorf("Join(%q) = %v, want ErrBadNode", bad, err)
		}
	}
	// Not started: a good name and a leave have no cluster to act on.
	if err := c.Join("peer@127.0.0.1"); !errors.Is(err, ErrNotStarted) {
		t.Errorf("Join with no cluster = %v, want ErrNotStarted", err)
	}
	if err := c.Leave(context.Background()); !errors.Is(err, ErrNotStarted) {
		t.Errorf("Leave with no cluster = %v, want ErrNotStarted", err)
	}
}
