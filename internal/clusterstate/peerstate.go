package clusterstate

import (
	"encoding/binary"
	"strings"

	"github.com/cloister-go/cloister/internal/core"
	"github.com/ergo-services/ergo/etf"
)

// ParseState reads a Monitor's state reply (ours or Elixir cloister's):
// the OTP application from fsm "monitor_<app>" and the ring members.
func ParseState(t etf.Term) (otpApp string, members []string, ok bool) {
	st, ok := ParsePeerState(t)
	return st.OTPApp, st.Members, ok
}

// PeerState is a peer Monitor's state answer as the core takes it.
type PeerState struct {
	OTPApp  string
	Members []string
	Hash    uint64
	HasHash bool // the answer carried members_hash: the peer answers pings
	Roles   []string
	Meta    map[string]string
}

// ParsePeerState reads a peer Monitor's state answer; ok is false for
// anything that is not one.
func ParsePeerState(t etf.Term) (st PeerState, ok bool) {
	mp, isMap := t.(etf.Map)
	if !isMap {
		return st, false
	}
	st.Hash, st.HasHash = HashOf(mp[etf.Atom("members_hash")])
	st.Roles, st.Meta = parseRoles(mp)
	st.OTPApp, st.Members, ok = parseStateMap(mp)
	return st, ok
}

// HashOf reads an 8-byte hash binary (a members_hash, a pong's hash).
func HashOf(t etf.Term) (uint64, bool) {
	b, ok := t.([]byte)
	if !ok || len(b) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(b), true
}

// TermText reads a term that carries text on the wire: a binary (Elixir
// string), an atom, or a charlist (a Go string after ETF).
func TermText(t etf.Term) (string, bool) {
	switch v := t.(type) {
	case []byte:
		return string(v), true
	case string:
		return v, true
	case etf.Atom:
		return string(v), true
	}
	return "", false
}

// TermInt reads an integer term as Ergo decodes one (int for a small
// integer, int64 for a larger one).
func TermInt(t etf.Term) (int64, bool) {
	switch v := t.(type) {
	case int:
		return int64(v), true
	case int64:
		return v, true
	}
	return 0, false
}

// parseRoles reads the roles and meta of a state answer, reading no
// further than the bounds (the core drops what is not valid).
func parseRoles(mp etf.Map) (roles []string, meta map[string]string) {
	list, _ := mp[etf.Atom("roles")].(etf.List)
	for i, r := range list {
		if i == 4*core.MaxRoles {
			break
		}
		if s, ok := TermText(r); ok {
			roles = append(roles, s)
		}
	}
	mm, _ := mp[etf.Atom("meta")].(etf.List)
	if len(mm) > 4*core.MaxMeta {
		return roles, nil // over the bound: ignored whole, so every node keeps the same
	}
	for _, e := range mm {
		kv, ok := e.(etf.Tuple)
		if !ok || len(kv) != 2 {
			continue
		}
		ks, ok1 := TermText(kv[0])
		vs, ok2 := TermText(kv[1])
		if ok1 && ok2 {
			if meta == nil {
				meta = map[string]string{}
			}
			meta[ks] = vs
		}
	}
	return roles, meta
}

func parseStateMap(mp etf.Map) (otpApp string, members []string, ok bool) {
	fsm, isText := TermText(mp[etf.Atom("fsm")])
	if !isText || !strings.HasPrefix(fsm, "monitor_") {
		return "", nil, false
	}
	otpApp = strings.TrimPrefix(fsm, "monitor_")
	groups, _ := mp[etf.Atom("groups")].(etf.List)
	// A peer may list any number of nodes; the core keeps at most
	// core.MaxReported valid ones, so reading far beyond is wasted work.
	const maxRead = 4 * core.MaxReported
	for _, g := range groups {
		tup, ok := g.(etf.Tuple)
		if !ok || len(tup) != 2 || tup[0] != etf.Atom("ring") {
			continue
		}
		list, _ := tup[1].(etf.List)
		if len(list) > maxRead {
			list = list[:maxRead]
		}
		for _, n := range list {
			switch v := n.(type) {
			case etf.Atom:
				members = append(members, string(v))
			case string:
				members = append(members, v)
			}
		}
	}
	return otpApp, members, true
}
