package cloister

import (
	"context"
	"errors"
	"testing"
)

func TestJoinRefusesBadNamesAndLeaveNeedsACluster(t *testing.T) {
	for _, bad := range []string{"", "noat", "@host", "name@", "a@b@c", "sp ace@h", "tab\t@h"} {
		if err := Join(bad); !errors.Is(err, ErrBadNode) {
			t.Errorf("Join(%q) = %v, want ErrBadNode", bad, err)
		}
	}
	if Default() == nil {
		if err := Join("peer@127.0.0.1"); !errors.Is(err, ErrNotStarted) {
			t.Errorf("Join with no cluster = %v, want ErrNotStarted", err)
		}
		if err := Leave(context.Background()); !errors.Is(err, ErrNotStarted) {
			t.Errorf("Leave with no cluster = %v, want ErrNotStarted", err)
		}
	}
}
