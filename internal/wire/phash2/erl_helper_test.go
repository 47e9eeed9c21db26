package phash2

import (
	"testing"

	"github.com/cloister-go/cloister/internal/erltest"
)

func requireErl(t *testing.T) { erltest.RequireErl(t, "phash2") }

func runErl(t *testing.T, src string, args ...string) ([]byte, error) {
	return erltest.RunModule(t, "phash2", src, args...)
}
