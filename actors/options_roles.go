package actors

import (
	"fmt"
	"slices"
	"strings"

	"github.com/cloister-go/cloister/internal/core"
)

// validateRoles checks Roles, Meta and RingRoles; rings holds every ring
// name (Ring and Groups).
func (o *Options) validateRoles(rings map[string]bool) error {
	if len(o.Roles) > core.MaxRoles {
		return invalid("Roles", o.Roles, fmt.Sprintf("at most %d roles, not %d", core.MaxRoles, len(o.Roles)))
	}
	for i, r := range o.Roles {
		if err := core.CheckRole(r); err != nil {
			return invalidAt("Roles", i, r, err.Error())
		}
		if j := slices.Index(o.Roles[:i], r); j >= 0 {
			return invalidAt("Roles", i, r, fmt.Sprintf("listed twice (also Roles[%d])", j))
		}
	}
	if len(o.Meta) > core.MaxMeta {
		return invalid("Meta", len(o.Meta), fmt.Sprintf("at most %d entries", core.MaxMeta))
	}
	keys := map[string]int{}
	for i, kv := range o.Meta {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return invalidAt("Meta", i, kv, "want key=value")
		}
		if err := core.CheckRole(k); err != nil {
			return invalidAt("Meta", i, kv, "key: "+err.Error())
		}
		if err := core.CheckMetaValue(v); err != nil {
			return invalidAt("Meta", i, kv, "value: "+err.Error())
		}
		if j, dup := keys[k]; dup {
			return invalidAt("Meta", i, kv, fmt.Sprintf("key %s set twice (also Meta[%d])", k, j))
		}
		keys[k] = i
	}
	restricted := map[string]int{}
	for i, rr := range o.RingRoles {
		name, role, ok := strings.Cut(rr, "=")
		if !ok {
			return invalidAt("RingRoles", i, rr, "want ring=role")
		}
		if !rings[name] {
			return invalidAt("RingRoles", i, rr, fmt.Sprintf("no ring %s (want Ring or one of Groups: %s)", name, strings.Join(o.rings(), ", ")))
		}
		if err := core.CheckRole(role); err != nil {
			return invalidAt("RingRoles", i, rr, "role: "+err.Error())
		}
		if j, dup := restricted[name]; dup {
			return invalidAt("RingRoles", i, rr, fmt.Sprintf("ring %s restricted twice (also RingRoles[%d])", name, j))
		}
		restricted[name] = i
	}
	return nil
}

// roles is Roles sorted (the core's and the wire's form).
func (o *Options) roles() []string {
	if len(o.Roles) == 0 {
		return nil
	}
	rs := slices.Clone(o.Roles)
	slices.Sort(rs)
	return rs
}

// meta is Meta as a map.
func (o *Options) meta() map[string]string {
	if len(o.Meta) == 0 {
		return nil
	}
	m := make(map[string]string, len(o.Meta))
	for _, kv := range o.Meta {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

// ringRoles maps each restricted ring to the role its members need.
func (o *Options) ringRoles() map[string]string {
	m := map[string]string{}
	for _, rr := range o.RingRoles {
		name, role, _ := strings.Cut(rr, "=")
		m[name] = role
	}
	return m
}
