package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/cloister-go/cloister/internal/localcluster"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"

	"github.com/cloister-go/cloister"
	"github.com/cloister-go/cloister/health"
	"github.com/cloister-go/cloister/internal/wire/ergonode"
	"github.com/cloister-go/cloister/listener"
	"github.com/cloister-go/cloister/ring"
)

// worker is one node of the example: the entities it holds, and the
// handover that keeps them with their owner as the ring changes.
type worker struct {
	keys  []string
	seed  bool
	batch int
	api   *cloister.Cluster // the rings, the node, the fan-out
	st    *store
	logf  func(string, ...interface{})

	// hmu serializes handovers: the listener's and the drain.
	hmu      sync.Mutex
	index    *hashIndex // the key space by key hash, built on the first ring
	last     *ring.View // the ring this node has handed over for
	leftover []string   // held keys a push failed for; retried next time
	reports  []handover
	drained  bool

	busy     atomic.Bool
	lastHash atomic.Uint64 // last.Hash(), for the state endpoint
	pushed   atomic.Int64  // entities handed to other nodes, in total

	pmu     sync.Mutex
	pending []string // keys owned under last and not received yet
}

// handover reports one ring change as this node handled it.
type handover struct {
	Epoch   uint64   `json:"epoch"`
	Members []string `json:"members"`
	Drain   bool     `json:"drain,omitempty"`
	// Gained and Lost: this node's keys in the hash ranges it gained and
	// lost from the previous ring to the new (ring.DiffRanges).
	Gained int `json:"gained"`
	Lost   int `json:"lost"`
	// Seeded: entities created (the first ring of a seed node).
	Seeded int `json:"seeded,omitempty"`
	// Pushed: entities handed to their new owners; Batches: Multicalls
	// that carried them; Retries: failed attempts retried; Failed:
	// entities still here after all retries.
	Pushed  int `json:"pushed"`
	Batches int `json:"batches"`
	Retries int `json:"retries"`
	Failed  int `json:"failed"`
	// DiffMs: finding the moved keys from the ranges (index lookups).
	DiffMs float64 `json:"diff_ms"`
	PushMs float64 `json:"push_ms"`
}

// runWorker is `zerocost node`: the flags the local-cluster harness passes
// (the same as `cloister node`), and ours.
func runWorker(args []string) int {
	fs := flag.NewFlagSet("zerocost node", flag.ContinueOnError)
	name := fs.String("name", "", "node name, name@host")
	cookie := fs.String("cookie", "cloister", "distribution cookie")
	epmdPort := fs.Int("epmd-port", 4369, "EPMD port")
	httpAddr := fs.String("http", "127.0.0.1:0", "serve /status and the /zc/ endpoints on this address")
	events := fs.Bool("events", false, "print events as JSON lines on stdout")
	sentry := fs.String("sentry", "", "comma-separated peer nodes")
	consensus := fs.Int("consensus", 1, "members needed before ready")
	otpApp := fs.String("otp-app", "zerocost", "application (ring) name")
	nkeys := fs.Int("keys", 1000000, "number of entity keys")
	seed := fs.Bool("seed", false, "create the entities this node owns on its first ring")
	batch := fs.Int("batch", 10000, "entities per handover Multicall")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *name == "" || *nkeys < 1 || *batch < 1 {
		fmt.Fprintln(os.Stderr, "zerocost node: need -name, -keys ≥ 1, -batch ≥ 1")
		return 2
	}
	logger := log.New(os.Stderr, "", log.LstdFlags|log.Lmicroseconds)
	out := localcluster.NewPrinter(os.Stdout, *events)

	w := &worker{keys: makeKeys(*nkeys), seed: *seed, batch: *batch, st: newStore(), logf: logger.Printf}
	opts := cloister.DefaultOptions()
	opts.OTPApp, opts.Ring = *otpApp, "" // the ring is named after the application
	opts.Consensus = *consensus
	if *sentry != "" {
		opts.Sentry = strings.Split(*sentry, ",")
	}
	// cloister logs through slog.Default, that is through package log.
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	// The printer first, so the harness sees a change at once; then the
	// handover, which may take a while (the Monitor is not held up by it:
	// listeners run on their own goroutine).
	opts.Listener = listener.Func(func(from, to listener.State, s listener.Snapshot) {
		out.Print(map[string]interface{}{"event": "state", "node": s.Node, "from": from, "to": to, "snapshot": s})
		if to == "ready" {
			w.handover()
		}
	})
	opts.AdditionalModules = []cloister.Child{{
		Name: storeName, Child: &storeServer{st: w.st},
		Options: gen.ProcessOptions{MailboxSize: ergonode.NetworkMailbox},
	}}
	var err error
	if w.api, err = cloister.New(opts); err != nil {
		fmt.Fprintln(os.Stderr, "zerocost node:", err)
		return 2
	}

	mux := health.Handler(w.api.State)
	mux.HandleFunc("/zc/state", w.serveState)
	mux.HandleFunc("/zc/report", w.serveReport)
	mux.HandleFunc("/zc/work", w.serveWork)
	mux.HandleFunc("/zc/drain", w.serveDrain)
	mux.HandleFunc("/zc/halt", w.serveHalt)
	addr, stop, err := serveHTTP(*httpAddr, mux)
	if err != nil {
		fmt.Fprintf(os.Stderr, "zerocost node: -http %s: %v\n", *httpAddr, err)
		return 1
	}
	defer stop()
	out.Print(map[string]interface{}{"event": "listening", "http": addr})

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	err = w.api.Start(context.Background(), *name, cloister.NodeOptions{Cookie: *cookie, EPMDPort: uint16(*epmdPort)})
	if err != nil {
		out.Print(map[string]interface{}{"event": "error", "node": *name, "error": err.Error()})
		fmt.Fprintln(os.Stderr, "zerocost node:", err)
		return 1
	}
	out.Print(map[string]interface{}{"event": "started", "node": w.api.Name()})

	<-sigs
	// Leaving: hand every entity over before the node goes (the
	// coordinator normally asks for the drain first; then this is a no-op).
	if rep, err := w.drain(); err != nil {
		logger.Printf("zerocost: drain: %v (%d entities could not be handed over)", err, rep.Failed)
	}
	self := w.api.Name()
	// Then leave gracefully: the others drop this node from their rings at
	// once (no flap grace) and their listeners hear it before it stops.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	if err := w.api.Leave(ctx); err != nil {
		logger.Printf("zerocost: %v", err)
	}
	cancel()
	out.Print(map[string]interface{}{"event": "stopped", "node": self})
	return 0
}

// handover runs on the listener's goroutine when the node becomes ready:
// from the ring it last handed over for to the current one.
func (w *worker) handover() {
	w.hmu.Lock()
	defer w.hmu.Unlock()
	if w.drained {
		return
	}
	cur, err := w.api.Ring("")
	if err != nil || cur.Len() == 0 || (w.last != nil && cur.Hash() == w.last.Hash()) {
		return
	}
	w.busy.Store(true)
	defer w.busy.Store(false)
	self := w.api.Name()
	rep := handover{Epoch: cur.Epoch(), Members: cur.Members()}

	if w.index == nil {
		if w.index, err = newHashIndex(cur, w.keys); err != nil {
			w.logf("zerocost: %v", err)
			return
		}
	}
	t0 := time.Now()
	// A nil previous ring owns nothing: on the first ring everything this
	// node owns is "gained". The ranges give the moved keys without asking
	// the owner of every key (diffOwners over the key space, which this
	// replaces, took 1M keys × 2 lookups).
	gr, lr := ring.DiffRanges(w.last, cur, self)
	gained := map[string][]string{self: w.index.in(nil, gr)}
	lost := map[string][]string{self: w.index.in(nil, lr)}
	rep.DiffMs = ms(time.Since(t0))
	rep.Gained, rep.Lost = len(gained[self]), len(lost[self])

	if w.last == nil && w.seed {
		w.st.seed(gained[self])
		rep.Seeded = len(gained[self])
	} else {
		// Wait for what we gained, and stop waiting for what we no longer
		// own (promised by a ring we only saw briefly).
		w.pmu.Lock()
		still := w.pending[:0]
		for _, k := range w.pending {
			if o, _ := cur.Owner(k); o == self {
				still = append(still, k)
			}
		}
		w.pending = append(still, gained[self]...)
		w.pmu.Unlock()
	}
	t1 := time.Now()
	w.push(cur, append(lost[self], w.leftover...), &rep)
	rep.PushMs = ms(time.Since(t1))
	w.last = cur
	w.lastHash.Store(cur.Hash())
	w.reports = append(w.reports, rep)
	w.logf("zerocost: ring epoch %d (%d members): gained %d, lost %d, pushed %d in %d batches (diff %.0f ms, push %.0f ms)",
		rep.Epoch, len(rep.Members), rep.Gained, rep.Lost, rep.Pushed, rep.Batches, rep.DiffMs, rep.PushMs)
}

// drain hands every entity over to its owner in the ring without this
// node, before the node leaves.
func (w *worker) drain() (handover, error) {
	w.hmu.Lock()
	defer w.hmu.Unlock()
	if w.drained {
		return handover{Drain: true}, nil
	}
	w.busy.Store(true)
	defer w.busy.Store(false)
	w.drained = true
	cur, err := w.api.Ring("")
	if err != nil {
		return handover{Drain: true}, err
	}
	self := w.api.Name()
	others := slices.DeleteFunc(cur.Members(), func(m string) bool { return m == self })
	rep := handover{Drain: true, Members: others}
	if len(others) == 0 {
		return rep, errors.New("zerocost: no other member to hand over to")
	}
	next := ring.NewSet()
	if err := next.Define("after", nil); err != nil { // nil: the default engine, the cluster's (opts.Engine is not set)
		return rep, err
	}
	after, _, err := next.Update("after", others)
	if err != nil {
		return rep, err
	}
	if w.index == nil {
		if w.index, err = newHashIndex(cur, w.keys); err != nil {
			return rep, err
		}
	}
	t0 := time.Now()
	_, lr := ring.DiffRanges(cur, after, self)
	lost := map[string][]string{self: w.index.in(nil, lr)}
	rep.DiffMs = ms(time.Since(t0))
	rep.Lost = len(lost[self])
	t1 := time.Now()
	w.push(after, append(lost[self], w.leftover...), &rep)
	rep.PushMs = ms(time.Since(t1))
	w.reports = append(w.reports, rep)
	if rep.Failed > 0 {
		return rep, fmt.Errorf("zerocost: %d entities not handed over", rep.Failed)
	}
	return rep, nil
}

// push hands the held entities among keys to their owners in to, in
// batches, one goroutine per destination. The caller holds hmu.
func (w *worker) push(to *ring.View, keys []string, rep *handover) {
	self := w.api.Name()
	byOwner := map[string][]string{}
	for _, k := range keys {
		if o, err := to.Owner(k); err == nil && o != self {
			byOwner[o] = append(byOwner[o], k)
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var failed []string
	for owner, ks := range byOwner {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for start := 0; start < len(ks); start += w.batch {
				buf, sent := w.st.encode(ks[start:min(start+w.batch, len(ks))])
				if len(sent) == 0 {
					continue
				}
				retries, err := w.sendBatch(owner, buf, len(sent))
				mu.Lock()
				rep.Retries += retries
				if err != nil {
					w.logf("zerocost: hand over %d entities to %s: %v", len(sent), owner, err)
					failed = append(failed, sent...)
				} else {
					w.st.drop(sent)
					rep.Pushed += len(sent)
					rep.Batches++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	w.leftover = failed
	rep.Failed = len(failed)
	w.pushed.Add(int64(rep.Pushed))
}

// sendBatch puts one batch on owner with Multicall, retrying while the
// owner is not ready for it yet (its store not registered: a node becomes
// a member as soon as its Monitor answers) or is slow, for up to 30 s.
func (w *worker) sendBatch(owner string, buf []byte, count int) (retries int, err error) {
	backoff := 20 * time.Millisecond
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := w.api.Multicall([]string{owner}, storeName, etf.Tuple{atomPut, buf}, 10*time.Second)
		if err != nil {
			return retries, err
		}
		r := res[0]
		if r.Err == nil {
			if t, ok := r.Reply.(etf.Tuple); ok && len(t) == 2 && t[0] == atomOK && asInt(t[1]) == int64(count) {
				return retries, nil
			}
			return retries, fmt.Errorf("zerocost: %s answered %v to a batch of %d", owner, r.Reply, count)
		}
		if errors.Is(r.Err, cloister.ErrRemote) || time.Now().After(deadline) {
			return retries, r.Err
		}
		retries++
		time.Sleep(backoff)
		backoff = min(2*backoff, time.Second)
	}
}

func asInt(t etf.Term) int64 {
	switch v := t.(type) {
	case int:
		return int64(v)
	case int64:
		return v
	case int32:
		return int64(v)
	case uint8:
		return int64(v)
	}
	return -1
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// pendingCount prunes the keys that arrived and returns how many have not.
func (w *worker) pendingCount() int {
	w.pmu.Lock()
	defer w.pmu.Unlock()
	w.pending = w.st.missing(w.pending)
	return len(w.pending)
}

// nodeState is the cheap state the coordinator polls until the cluster is
// quiet.
type nodeState struct {
	Node       string   `json:"node"`
	State      string   `json:"state"`
	Members    []string `json:"members"`
	RingHash   uint64   `json:"ring_hash"`
	HandedHash uint64   `json:"handed_hash"` // the ring the last handover was for
	Busy       bool     `json:"busy"`
	Pending    int      `json:"pending"`
	Leftover   int      `json:"leftover"`
	Held       int      `json:"held"`
	Pushed     int64    `json:"pushed"`
	Received   int64    `json:"received"`
}

func (w *worker) state() nodeState {
	s := w.api.State()
	ns := nodeState{Node: s.Node, State: string(s.State), Members: s.Members, HandedHash: w.lastHash.Load(),
		Busy: w.busy.Load(), Pending: w.pendingCount(), Held: w.st.len(), Pushed: w.pushed.Load()}
	if r, err := w.api.Ring(""); err == nil {
		ns.RingHash = r.Hash()
	}
	w.st.mu.Lock()
	ns.Received = w.st.received
	w.st.mu.Unlock()
	if w.hmu.TryLock() {
		ns.Leftover = len(w.leftover)
		w.hmu.Unlock()
	} else {
		ns.Busy = true
	}
	return ns
}

func (w *worker) serveState(rw http.ResponseWriter, r *http.Request) { writeJSON(rw, w.state()) }

// report is everything the coordinator checks after a step.
type report struct {
	nodeState
	// Owned: keys of the key space this node owns (Mine), counted now.
	Owned int `json:"owned"`
	// Strays: entities held although another node owns them.
	Strays int `json:"strays"`
	// MinWork and MaxWork: the work counts of the entities held.
	MinWork int64 `json:"min_work"`
	MaxWork int64 `json:"max_work"`
	// Bitmap: bit i set when entity i is held (base64).
	Bitmap string `json:"bitmap"`
	// RSS (from /proc) and the live Go heap after a GC, in bytes.
	RSS       int64      `json:"rss"`
	HeapLive  uint64     `json:"heap_live"`
	Handovers []handover `json:"handovers"`
}

func (w *worker) serveReport(rw http.ResponseWriter, r *http.Request) {
	rep := report{nodeState: w.state()}
	for _, k := range w.keys {
		if w.api.Mine(k) {
			rep.Owned++
		}
	}
	bits := make([]byte, (len(w.keys)+7)/8)
	w.st.mu.Lock()
	first := true
	for k, v := range w.st.m {
		if i := keyIndex(k); i >= 0 && i < len(w.keys) {
			bits[i/8] |= 1 << (i % 8)
		}
		if !w.api.Mine(k) {
			rep.Strays++
		}
		if first || v < rep.MinWork {
			rep.MinWork = v
		}
		if first || v > rep.MaxWork {
			rep.MaxWork = v
		}
		first = false
	}
	w.st.mu.Unlock()
	rep.Bitmap = base64.StdEncoding.EncodeToString(bits)
	w.hmu.Lock()
	rep.Handovers = slices.Clone(w.reports)
	w.hmu.Unlock()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	rep.HeapLive = m.HeapAlloc
	rep.RSS = rss()
	writeJSON(rw, rep)
}

// workResult is one work round on one node.
type workResult struct {
	Node     string  `json:"node"`
	Checked  int     `json:"checked"` // keys asked Mine
	Worked   int     `json:"worked"`  // owned and held: work count + 1
	Missing  int     `json:"missing"` // owned but not held
	Owned    int     `json:"owned"`   // Mine, counted again without the store
	Ms       float64 `json:"ms"`
	NsPerKey float64 `json:"ns_per_key"` // Mine plus the store update, per key of the space
	// MineNs is Mine alone per key; ModNs, the baseline measured right
	// after it, is a static partition's test (fnv1a(key) mod members),
	// which costs nothing to coordinate either but moves most keys on any
	// change of size. ModOwned is how many keys that partition gives here.
	MineNs   float64 `json:"mine_ns"`
	ModNs    float64 `json:"mod_ns"`
	ModOwned int     `json:"mod_owned"`
}

// serveWork runs one round: walk the whole key space, work on the keys
// this node owns. No coordination: Mine is a lock-free ring lookup.
func (w *worker) serveWork(rw http.ResponseWriter, r *http.Request) {
	res := workResult{Node: w.api.Name(), Checked: len(w.keys)}
	t0 := time.Now()
	w.st.mu.Lock()
	for _, k := range w.keys {
		if !w.api.Mine(k) {
			continue
		}
		if v, ok := w.st.m[k]; ok {
			w.st.m[k] = v + 1
			res.Worked++
		} else {
			res.Missing++
		}
	}
	w.st.mu.Unlock()
	el := time.Since(t0)
	res.Ms = ms(el)
	res.NsPerKey = float64(el.Nanoseconds()) / float64(len(w.keys))

	t1 := time.Now()
	for _, k := range w.keys {
		if w.api.Mine(k) {
			res.Owned++
		}
	}
	res.MineNs = float64(time.Since(t1).Nanoseconds()) / float64(len(w.keys))
	sibs := w.api.Siblings()
	me := uint32(slices.Index(sibs, res.Node))
	n := uint32(max(len(sibs), 1))
	t2 := time.Now()
	for _, k := range w.keys {
		if fnv1a(k)%n == me {
			res.ModOwned++
		}
	}
	res.ModNs = float64(time.Since(t2).Nanoseconds()) / float64(len(w.keys))
	writeJSON(rw, res)
}

func (w *worker) serveDrain(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(rw, "POST only", http.StatusMethodNotAllowed)
		return
	}
	rep, err := w.drain()
	if err != nil {
		http.Error(rw, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(rw, rep)
}

// serveHalt prepares a stop without handover: the whole cluster is going
// down, nobody is left to take the entities.
func (w *worker) serveHalt(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(rw, "POST only", http.StatusMethodNotAllowed)
		return
	}
	w.hmu.Lock()
	w.drained = true
	w.hmu.Unlock()
	writeJSON(rw, map[string]bool{"halted": true})
}

func writeJSON(rw http.ResponseWriter, v interface{}) {
	rw.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(rw).Encode(v)
}

// rss reads this process's resident set size (Linux; 0 elsewhere).
func rss() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// serveHTTP serves h on addr ("127.0.0.1:0" picks a port) until stop,
// which lets requests in progress finish for up to 2 s; it returns the
// address actually listened on.
func serveHTTP(addr string, h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }() // ends with ErrServerClosed at stop
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
	return ln.Addr().String(), stop, nil
}
