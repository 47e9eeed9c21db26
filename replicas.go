package cloister

import (
	"github.com/cloister-go/cloister/internal/ringx"
	"github.com/cloister-go/cloister/ring"
	"github.com/ergo-services/ergo/etf"
)

// Replica sets: the members a key's copies live on, for replication and
// failover. Errors to branch on with errors.Is, besides ErrNoSuchRing and
// ErrEmptyRing.
var (
	// ErrBadCount is returned by WhoisN and its kin for n < 1.
	ErrBadCount = ring.ErrBadCount
	// ErrNoReplicas is returned for a ring whose engine cannot list
	// replicas (a user's engine whose Lookup is not a ring.ReplicaLookup).
	ErrNoReplicas = ring.ErrNoReplicas
)

// WhoisN returns up to n distinct members for key in ring group ("" = the
// default ring), in ring order: the replica set of key, owner first. Every
// node with the same members computes the same set.
//
// On the default engine it is consistent.GetN over members: min(n,
// members) of them, the first Whois(group, key). On the libring engine it
// is exactly what HashRing.key_to_nodes/3 returns on Elixir nodes, which
// for keys at the top of the ring is shorter than n and in reverse order
// (see package ring/libring). It never blocks; n < 1 is ErrBadCount.
func (c *Cluster) WhoisN(group, key string, n int) ([]string, error) {
	if n < 1 {
		return c.AppendWhoisN(nil, group, key, n)
	}
	return c.AppendWhoisN(make([]string, 0, min(n, 16)), group, key, n)
}

// AppendWhoisN is WhoisN appending to dst: with room for n members in dst
// (n <= 16) it does not allocate.
func (c *Cluster) AppendWhoisN(dst []string, group, key string, n int) ([]string, error) {
	if group == "" {
		group = c.ring
	}
	return c.rings.AppendOwners(dst, group, key, n)
}

// WhoisTermN is WhoisN for any term. The default engine looks up Key(term);
// the libring engine hashes the term with erlang:phash2 as key_to_nodes
// does, which for an atom differs from WhoisTerm's hashing (key_to_node
// hashes an atom's term_to_binary, key_to_nodes the atom itself), so the
// first of an atom's replica set need not be its WhoisTerm owner.
func (c *Cluster) WhoisTermN(group string, key etf.Term, n int) ([]string, error) {
	if group == "" {
		group = c.ring
	}
	s, err := c.rings.Get(group)
	if err != nil {
		return nil, err
	}
	var dst []string
	if n > 0 {
		dst = make([]string, 0, min(n, s.Len()))
	}
	return ringx.AppendOwnersTerm(s, dst, key, n, Key)
}
