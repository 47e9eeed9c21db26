// Package nodename holds the one rule for a node name, shared by the
// options, the node start, service discovery and the Monitor's reading of
// what peers report.
package nodename

import (
	"errors"
	"fmt"
	"strings"
)

// MaxLen is the longest node name: an atom's limit on BEAM nodes.
const MaxLen = 255

// ErrInvalid is wrapped by every error of Check.
var ErrInvalid = errors.New("invalid node name")

// Check accepts "name@host": exactly one '@' between a non-empty name and
// a non-empty host, at most MaxLen bytes, no spaces or control characters.
// Both Ergo and BEAM nodes accept every name it accepts.
func Check(name string) error {
	why := ""
	n, h, ok := strings.Cut(name, "@")
	switch {
	case name == "":
		why = "empty"
	case len(name) > MaxLen:
		why = fmt.Sprintf("%d bytes, at most %d allowed", len(name), MaxLen)
	case !ok || n == "" || h == "" || strings.Contains(h, "@"):
		why = "want name@host: exactly one '@' between a non-empty name and host"
	default:
		for i := 0; i < len(name); i++ {
			if b := name[i]; b <= ' ' || b == 0x7f {
				why = fmt.Sprintf("byte %d is a space or control character", i)
				break
			}
		}
	}
	if why == "" {
		return nil
	}
	return &Error{Name: name, Why: why}
}

// Error is Check's error: the name and what is wrong with it.
type Error struct {
	Name, Why string
}

// Error names the name (cut to 64 bytes) and what is wrong with it.
func (e *Error) Error() string {
	name := e.Name
	if len(name) > 64 {
		name = name[:61] + "..."
	}
	return fmt.Sprintf("%s %q: %s", ErrInvalid, name, e.Why)
}

// Unwrap returns ErrInvalid.
func (e *Error) Unwrap() error { return ErrInvalid }
