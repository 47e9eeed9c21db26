package libring

import (
	"testing"

	"github.com/cloister-go/cloister/internal/erltest"
)

func requireErl(t *testing.T) { erltest.RequireErl(t, "The libring engine") }

func runErl(t *testing.T, src string, args ...string) ([]byte, error) {
	return erltest.RunModule(t, "The libring engine", src, args...)
}
