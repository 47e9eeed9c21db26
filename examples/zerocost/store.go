package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
)

// keyPrefix starts every entity key; the rest is the entity's index.
const keyPrefix = "entity:"

// makeKeys returns the key space, "entity:0" .. "entity:<n-1>". Every node
// builds the same list: it is what diffOwners runs over. The keys are slices
// of one string, so a million of them cost one allocation of ~14 MB plus
// their headers.
func makeKeys(n int) []string {
	var b strings.Builder
	b.Grow(n * (len(keyPrefix) + 7))
	ends := make([]int, n)
	for i := 0; i < n; i++ {
		b.WriteString(keyPrefix)
		b.WriteString(strconv.Itoa(i))
		ends[i] = b.Len()
	}
	all := b.String()
	keys := make([]string, n)
	start := 0
	for i, end := range ends {
		keys[i] = all[start:end]
		start = end
	}
	return keys
}

// fnv1a is the 32-bit FNV-1a hash of s, the baseline's static partition.
func fnv1a(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// keyIndex is the index of an entity key, or -1.
func keyIndex(key string) int {
	if !strings.HasPrefix(key, keyPrefix) {
		return -1
	}
	i, err := strconv.Atoi(key[len(keyPrefix):])
	if err != nil || i < 0 {
		return -1
	}
	return i
}

// store is the example's entity store: in memory, one per node, entity key
// to its work count. Handing an entity over copies it to the new owner
// (Multicall, acknowledged) and only then deletes it here, so a failure
// never loses it; puts are idempotent, so a retried batch is harmless.
//
// What a real store would need on top:
//   - durability or replication: a node killed with SIGKILL takes its
//     entities with it here (this example only removes nodes that drain);
//   - fencing: work on a key must stop on the old owner before the copy
//     and resume on the new one after it (here the coordinator runs work
//     only while the cluster is quiet); carry the ring hash with each batch
//     and refuse writes from an owner the receiver no longer recognises;
//   - a pull path: a joining node that misses a push (the old owner died
//     mid-way) should fetch from a replica instead of waiting;
//   - streaming and back-pressure for large entities, and versioned values
//     so concurrent handovers (two changes in quick succession) resolve
//     deterministically.
type store struct {
	mu       sync.Mutex
	m        map[string]int64
	received int64 // entities put by peers
}

func newStore() *store { return &store{m: make(map[string]int64)} }

// seed creates entities with zero work.
func (s *store) seed(keys []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		s.m[k] = 0
	}
}

// len is the number of entities held.
func (s *store) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// encode appends the held entities among keys to a batch, and returns the
// batch and the keys it carries. Format: per entity, uvarint key length,
// key bytes, uvarint work count. One binary is far cheaper to send through
// Ergo than a list of tuples.
func (s *store) encode(keys []string) ([]byte, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	buf := make([]byte, 0, len(keys)*(len(keyPrefix)+10))
	var sent []string
	for _, k := range keys {
		v, ok := s.m[k]
		if !ok {
			continue
		}
		buf = binary.AppendUvarint(buf, uint64(len(k)))
		buf = append(buf, k...)
		buf = binary.AppendUvarint(buf, uint64(v))
		sent = append(sent, k)
	}
	return buf, sent
}

var errBadBatch = errors.New("zerocost: malformed batch")

// put stores every entity of a batch and returns how many.
func (s *store) put(batch []byte) (int, error) {
	type entry struct {
		k string
		v int64
	}
	var es []entry
	for len(batch) > 0 {
		n, w := binary.Uvarint(batch)
		if w <= 0 || uint64(len(batch)-w) < n {
			return 0, fmt.Errorf("%w: bad key length", errBadBatch)
		}
		k := string(batch[w : w+int(n)])
		batch = batch[w+int(n):]
		v, w := binary.Uvarint(batch)
		if w <= 0 {
			return 0, fmt.Errorf("%w: bad value for %q", errBadBatch, k)
		}
		batch = batch[w:]
		es = append(es, entry{k, int64(v)})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range es {
		s.m[e.k] = e.v
	}
	s.received += int64(len(es))
	return len(es), nil
}

// drop deletes entities handed over.
func (s *store) drop(keys []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		delete(s.m, k)
	}
}

// missing returns the keys not held, in order.
func (s *store) missing(keys []string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, k := range keys {
		if _, ok := s.m[k]; !ok {
			out = append(out, k)
		}
	}
	return out
}

// storeName is the store server's registered name on every node.
const storeName = "zerocost_store"

var (
	atomPut   = etf.Atom("put")
	atomOK    = etf.Atom("ok")
	atomError = etf.Atom("error")
)

// storeServer receives handed-over entities: call {put, Batch} answers
// {ok, Count} once they are stored.
type storeServer struct {
	gen.Server
	st *store
}

// HandleCall stores a batch.
func (s *storeServer) HandleCall(p *gen.ServerProcess, from gen.ServerFrom, msg etf.Term) (etf.Term, gen.ServerStatus) {
	t, ok := msg.(etf.Tuple)
	if !ok || len(t) != 2 || t[0] != atomPut {
		return etf.Tuple{atomError, "unknown request"}, gen.ServerStatusOK
	}
	batch, ok := t[1].([]byte)
	if !ok {
		return etf.Tuple{atomError, "batch is not a binary"}, gen.ServerStatusOK
	}
	n, err := s.st.put(batch)
	if err != nil {
		return etf.Tuple{atomError, err.Error()}, gen.ServerStatusOK
	}
	return etf.Tuple{atomOK, n}, gen.ServerStatusOK
}

// HandleInfo ignores stray messages: they must not kill the store.
func (s *storeServer) HandleInfo(p *gen.ServerProcess, msg etf.Term) gen.ServerStatus {
	return gen.ServerStatusOK
}
