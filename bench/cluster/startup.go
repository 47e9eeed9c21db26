package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cloister-go/cloister/internal/localcluster"
)

// -startup K: the CPU a lone node spends from exec until it is ready (a
// cloister node with consensus 1: its listener told of ready; a raw node:
// its "mesh" event, printed once its watcher runs). CPU is the sum of the
// process's threads' run time from /proc (schedstat, nanoseconds), read as
// soon as the event arrives, so it is CPU, not wall time, and holds on a
// loaded machine. The variants (each cloister binary of -startup-bins, then
// raw) take turns K times.

// startupRound is one lone start: CPU and wall time to ready.
type startupRound struct{ cpu, wall time.Duration }

func runStartup(k int, bins []string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	hs := make([]*localcluster.Harness, len(bins))
	for i, b := range bins {
		h, err := localcluster.New(b, localcluster.Options{Cookie: "startup"})
		if err != nil {
			return err
		}
		defer h.Close()
		hs[i] = h
	}
	res := make([][]startupRound, len(bins)+1)
	for r := 0; r < k; r++ {
		for i, h := range hs {
			name := fmt.Sprintf("startup%d_%d@127.0.0.1", i, r)
			begin := time.Now()
			n, err := h.Start(localcluster.Spec{Name: name, Sentry: []string{name}, Consensus: 1})
			if err != nil {
				return err
			}
			if _, err := n.WaitFor(30*time.Second, "ready", func(e localcluster.Event) bool {
				return e.Event == "state" && e.To == "ready"
			}); err != nil {
				return err
			}
			cpu, err := threadsCPU(n.Pid())
			wall := time.Since(begin)
			n.Kill()
			if err != nil {
				return err
			}
			res[i] = append(res[i], startupRound{cpu, wall})
		}
		name := fmt.Sprintf("startupraw_%d@127.0.0.1", r)
		begin := time.Now()
		p, err := startRaw(self, name, nil, "startup", hs[0].EPMD.Port)
		if err != nil {
			return err
		}
		if _, err := p.wait(30*time.Second, "mesh", func(e rawEvent) bool { return e.Event == "mesh" }); err != nil {
			p.kill()
			return err
		}
		cpu, err := threadsCPU(p.pid())
		wall := time.Since(begin)
		p.kill()
		if err != nil {
			return err
		}
		res[len(bins)] = append(res[len(bins)], startupRound{cpu, wall})
	}
	fmt.Printf("**Start-up CPU**: a lone node from exec to ready (cloister: consensus 1, listener told of ready; raw: its watcher running), CPU of all its threads; %d rounds, variants interleaved.\n\n", k)
	fmt.Println("| variant | CPU median [min–max] | wall median | CPU / raw |")
	fmt.Println("|---|---|---|---|")
	rawMed := med(pickStartup(res[len(bins)], func(s startupRound) time.Duration { return s.cpu }))
	for i := range res {
		label := "raw node"
		if i < len(bins) {
			label = filepath.Base(bins[i])
		}
		c := pickStartup(res[i], func(s startupRound) time.Duration { return s.cpu })
		w := pickStartup(res[i], func(s startupRound) time.Duration { return s.wall })
		fmt.Printf("| %s | %.1f ms [%.1f–%.1f] | %.1f ms | %.2f× |\n", label, msf(med(c)), msf(lo(c)), msf(hi(c)), msf(med(w)),
			float64(med(c))/float64(rawMed))
	}
	return nil
}

func pickStartup(rs []startupRound, f func(startupRound) time.Duration) []time.Duration {
	var out []time.Duration
	for _, r := range rs {
		out = append(out, f(r))
	}
	return out
}

func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// meanCPU is the mean over pids of threadsCPU and of the write syscalls
// made (/proc/PID/io syscw).
func meanCPU(pids []int) (time.Duration, int64, error) {
	var sum time.Duration
	var writes int64
	for _, pid := range pids {
		c, err := threadsCPU(pid)
		if err != nil {
			return 0, 0, err
		}
		sum += c
		w, err := procIO(pid, "syscw")
		if err != nil {
			return 0, 0, err
		}
		writes += w
	}
	n := max(len(pids), 1)
	return sum / time.Duration(n), writes / int64(n), nil
}

// procIO reads one counter of /proc/PID/io.
func procIO(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+": "); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/io", field, pid)
}

// threadsCPU sums the run time of every thread of pid (the first field of
// /proc/PID/task/TID/schedstat, in nanoseconds). A thread that has exited
// is missed; the Go runtime keeps its threads.
func threadsCPU(pid int) (time.Duration, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "schedstat"))
		if err != nil {
			continue // the thread ended between the listing and the read
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, err
		}
		sum += ns
	}
	return time.Duration(sum), nil
}
