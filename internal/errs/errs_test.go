package errs

import (
	"errors"
	"fmt"
	"testing"
)

// Each kind matches its own sentinel and no other, through wrapping too.
func TestNodeErrorMatchesItsKindOnly(t *testing.T) {
	kinds := []ErrorKind{KindTimeout, KindNoConnection, KindNoSuchProcess, KindRemote, KindRefused}
	for _, k := range kinds {
		err := fmt.Errorf("wrapped: %w", &NodeError{Node: "a@h", Kind: k})
		for _, o := range kinds {
			if got := errors.Is(err, SentinelOf(o)); got != (o == k) {
				t.Errorf("errors.Is(%v, %v) = %v", err, SentinelOf(o), got)
			}
		}
		var ne *NodeError
		if !errors.As(err, &ne) || ne.Kind != k {
			t.Errorf("errors.As(%v) = %v", err, ne)
		}
	}
	if SentinelOf(0) != nil || errors.Is(&NodeError{Kind: 0}, ErrTimeout) {
		t.Error("the zero kind matches a sentinel")
	}
	remote := Remote("boom", "error", nil, "function f raised boom")
	if err := (&NodeError{Node: "a@h", Kind: KindRemote, Err: remote}); !errors.Is(err, ErrRemote) || !errors.Is(err, remote) {
		t.Errorf("%v does not match ErrRemote and its RemoteError", err)
	}
}

func TestStoppedAndOptionErrorsMatchTheirSentinels(t *testing.T) {
	if err := fmt.Errorf("x: %w", &StoppedError{Reason: "shutdown"}); !errors.Is(err, ErrStopped) {
		t.Errorf("%v does not match ErrStopped", err)
	}
	oe := &OptionError{Field: "Sentry", Index: 1, Value: "x", Why: "bad"}
	if !errors.Is(oe, ErrInvalidOption) || oe.Error() != `cloister: invalid option Sentry[1] = "x": bad` {
		t.Errorf("%v", oe)
	}
}
