package ring

import (
	"github.com/cloister-go/cloister/internal/ringx/hook"
	"github.com/ergo-services/ergo/etf"
)

// The module's own packages reach the unexported parts below through
// internal/ringx.
func init() {
	hook.Shares = func(v any) map[string]float64 { return v.(*View).shares() }
	hook.Ranges = func(v any, member string) any { return v.(*View).ranges(member) }
	hook.OwnerTerm = func(v any, key etf.Term, text func(etf.Term) string) (string, error) {
		return v.(*View).ownerTerm(key, text)
	}
	hook.AppendOwnersTerm = func(v any, dst []string, key etf.Term, n int, text func(etf.Term) string) ([]string, error) {
		return v.(*View).appendOwnersTerm(dst, key, n, text)
	}
	hook.Views = func(s any) any { return s.(*Set).views() }
	hook.MergeRanges = func(l any) any { return mergeRanges(l.([]HashRange)) }
}
