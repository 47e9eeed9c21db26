package nodename

import (
	"errors"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, ok := range []string{"a@b", "cloister_0@127.0.0.1", "x@" + strings.Repeat("h", MaxLen-2)} {
		if err := Check(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "ab", "@b", "a@", "a@b@c", "a b@c", "a@b c", "a\t@b", "a@b\x7f",
		"x@" + strings.Repeat("h", MaxLen-1)} {
		if err := Check(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q accepted (%v)", bad, err)
		}
	}
}
