package nodetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/cloister-go/cloister/internal/localcluster"
)

// RuntimeStats is what a node process reports on /debug/runtime: the Go
// runtime's goroutines and memory, its open file descriptors, and (with
// the test node's -record-dns) every DNS name it looked up, including the
// blocked ones that never left the process. ForcedGC counts the
// collections the program asked for (runtime.GC, debug.FreeOSMemory);
// HeapIdle and Released are runtime.MemStats' HeapIdle and HeapReleased:
// free heap, and the part of it returned to the OS.
type RuntimeStats struct {
	Goroutines  int      `json:"goroutines"`
	HeapAlloc   uint64   `json:"heap_alloc"`
	HeapInuse   uint64   `json:"heap_inuse"`
	HeapObjects uint64   `json:"heap_objects"`
	Sys         uint64   `json:"sys"`
	NumGC       uint32   `json:"num_gc"`
	ForcedGC    uint32   `json:"num_forced_gc"`
	HeapIdle    uint64   `json:"heap_idle"`
	Released    uint64   `json:"heap_released"`
	FDs         int      `json:"fds"`
	Uptime      float64  `json:"uptime_s"`
	DNS         []string `json:"dns_lookups"`
	DNSBlocked  []string `json:"dns_blocked"`
	DNSRecorded bool     `json:"dns_recorded"`
	// How the Monitor learnt its members' lists (clusterstate.Lists).
	StateAnswers int64 `json:"state_answers"`
	ListDeltas   int64 `json:"list_deltas"`
	DeltaMisses  int64 `json:"delta_misses"`
}

// Runtime asks node n's /debug/runtime; gc runs a collection first, so
// HeapAlloc is the live heap.
func Runtime(n *localcluster.Node, gc bool) (RuntimeStats, error) {
	addr := n.HTTPAddr()
	if addr == "" {
		return RuntimeStats{}, errors.New("nodetest: " + n.Name + " has no HTTP endpoint yet")
	}
	url := "http://" + addr + "/debug/runtime"
	if gc {
		url += "?gc=1"
	}
	c := http.Client{Timeout: 5 * time.Second}
	r, err := c.Get(url)
	if err != nil {
		return RuntimeStats{}, err
	}
	defer r.Body.Close()
	if r.StatusCode != http.StatusOK {
		return RuntimeStats{}, fmt.Errorf("nodetest: %s /debug/runtime: %s", n.Name, r.Status)
	}
	var s RuntimeStats
	return s, json.NewDecoder(r.Body).Decode(&s)
}

// Goroutines returns node n's goroutines grouped by stack (pprof text).
func Goroutines(n *localcluster.Node) (string, error) {
	addr := n.HTTPAddr()
	if addr == "" {
		return "", errors.New("nodetest: " + n.Name + " has no HTTP endpoint yet")
	}
	c := http.Client{Timeout: 5 * time.Second}
	r, err := c.Get("http://" + addr + "/debug/goroutines")
	if err != nil {
		return "", err
	}
	defer r.Body.Close()
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	return string(b), err
}
