package core

import (
	"fmt"
	"maps"
	"slices"
	"unicode"
	"unicode/utf8"
)

// Bounds of what a node announces about itself (its roles and metadata):
// small enough to travel in every state answer.
const (
	MaxRoles      = 16  // roles per node
	MaxRoleLen    = 64  // bytes per role, and per metadata key
	MaxMeta       = 32  // metadata entries per node
	MaxMetaValLen = 256 // bytes per metadata value
)

// CheckRole reports what is wrong with a role (or metadata key) name, or
// nil: 1 to MaxRoleLen bytes of letters, digits, '_', '-' or '.'.
func CheckRole(r string) error {
	if r == "" || len(r) > MaxRoleLen {
		return fmt.Errorf("want 1 to %d bytes, not %d", MaxRoleLen, len(r))
	}
	for _, c := range r {
		if !(c == '_' || c == '.' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return fmt.Errorf("%q is not allowed: want letters, digits, '_', '-' or '.'", c)
		}
	}
	return nil
}

// CheckMetaValue reports what is wrong with a metadata value, or nil: at
// most MaxMetaValLen bytes of printable UTF-8.
func CheckMetaValue(v string) error {
	if len(v) > MaxMetaValLen {
		return fmt.Errorf("want at most %d bytes, not %d", MaxMetaValLen, len(v))
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("not valid UTF-8")
	}
	for _, c := range v {
		if !unicode.IsPrint(c) {
			return fmt.Errorf("%q is not printable", c)
		}
	}
	return nil
}

// sanitizeRoles keeps the valid, distinct roles of src, at most MaxRoles,
// sorted: what a peer announces is bounded whatever it sends.
func sanitizeRoles(src []string) []string {
	var out []string
	for _, r := range src {
		if len(out) == MaxRoles {
			break
		}
		if CheckRole(r) == nil && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out
}

// sanitizeMeta keeps the valid entries of src, at most MaxMeta (the
// smallest keys first, so every node keeps the same ones).
func sanitizeMeta(src map[string]string) map[string]string {
	if len(src) == 0 {
		return nil
	}
	out := map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(src)) {
		if len(out) == MaxMeta {
			break
		}
		if CheckRole(k) == nil && CheckMetaValue(src[k]) == nil {
			out[k] = src[k]
		}
	}
	return out
}

// Roles is the roles of every member that announced some (self
// included), by member. Do not modify it.
func (c *Core) Roles() map[string][]string { return c.roles }

// Meta is the metadata of every member that announced some (self
// included), by member.
func (c *Core) Meta() map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, n := range c.members {
		var m map[string]string
		if n == c.cfg.Self {
			m = c.cfg.Meta
		} else if p := c.peers[n]; p != nil {
			m = p.meta
		}
		if len(m) > 0 {
			out[n] = m
		}
	}
	return out
}

// rolesOf maps each of members with roles to its roles. A member whose
// state answer carried none (a BEAM node, or a node with no roles) has
// none: it is in no role-restricted ring.
func (c *Core) rolesOf(members []string) map[string][]string {
	out := map[string][]string{}
	for _, n := range members {
		var rs []string
		if n == c.cfg.Self {
			rs = c.cfg.Roles
		} else if p := c.peers[n]; p != nil {
			rs = p.roles
		}
		if len(rs) > 0 {
			out[n] = rs
		}
	}
	return out
}

// WithRole filters members to the ones that have role, by the roles map
// a Publish carries ("" keeps them all).
func WithRole(members []string, roles map[string][]string, role string) []string {
	if role == "" {
		return members
	}
	var out []string
	for _, n := range members {
		if slices.Contains(roles[n], role) {
			out = append(out, n)
		}
	}
	return out
}
