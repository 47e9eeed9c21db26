// Command zerocost is cloister's showcase (the original's "zero-cost
// distribution" guide), run for real: a million keyed entities
// spread over a local cluster of node processes, each node working only on
// the keys it owns (Mine), and entities handed over when the topology
// changes.
//
//	go run ./examples/zerocost            # 1,000,000 keys
//	go run ./examples/zerocost -keys 20000
//
// The program is its own worker: it re-executes itself as `zerocost node
// ...`, one Ergo node per process, through the harness behind cloistertest
// and `cloister run` (internal/localcluster: a private epmd, the system's
// when installed, else an embedded one served by `zerocost epmd`). The
// coordinator (this process) is not an Ergo node: it drives the workers
// over HTTP.
//
// What it does and checks (exit status 1 if any check fails):
//
//  1. Three nodes form a cluster; on the first ready state each seeds the
//     entities it owns: the hash ranges it gains from nobody
//     (ring.DiffRanges(nil, ring, self)).
//  2. A work round: every node walks the whole key space and works on the
//     keys it owns (Mine), with no coordination.
//  3. A fourth node joins. On the new ring every node's listener takes the
//     hash ranges it gained and lost (ring.DiffRanges, the same ranges a
//     listener gets in Snapshot.RingChanges) and reads the moved keys out of a
//     key-hash index, without asking the owner of every key (diffOwners, a
//     scan of the key space: 0.5-1.5 s at 1M keys against a few ms, see
//     BenchmarkMovedKeys1M): the keys it lost are pushed to their new
//     owners with Multicall, in batches, and dropped locally.
//  4. One of the first nodes leaves: it drains first (the ranges it loses
//     to the ring without itself), then leaves gracefully (cloister Leave:
//     the others drop it at once, with no flap grace) and stops.
//
// After each step the coordinator gathers from every node a bitmap of the
// entities it holds and checks that every key is held exactly once, by the
// node the ring says owns it, with its work count intact; that the keys
// moved are exactly those whose owner changed, and how close that is to
// the ideal share (1/N of the keys). It prints per-node counts, times and
// memory (RSS and live Go heap).
//
// What a real store would need beyond this in-memory one: see store.go.
package main

import (
	"fmt"
	"github.com/cloister-go/cloister/internal/localcluster"
	"os"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "node":
			os.Exit(runWorker(os.Args[2:]))
		case "epmd":
			os.Exit(localcluster.EPMDMain("zerocost", os.Args[2:]))
		}
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// usage is printed for bad flags.
func usage() string {
	return fmt.Sprintf("usage: %s [-keys N] [-batch N] [-timeout D]", os.Args[0])
}
