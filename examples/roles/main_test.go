package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/cloister-go/cloister/internal/testenv"
)

// TestMain lets the test binary be the example: `node ARGS` runs a node,
// so the example's launcher starts real node processes of this binary.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "node" {
		os.Exit(runNode(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// The example as `go run ./examples/roles` runs it: three node processes,
// two workers and an api node. Every member shows its roles; the jobs ring
// holds the two workers only; the api node routes each job to the worker
// owning it, both workers get some; after worker_1 is killed every job
// goes to worker_0, and the api node never owns one.
func TestRolesExample(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 3 node processes")
	}
	var out, errb testenv.Buffer
	code := run([]string{"-jobs", "100"}, &out, &errb)
	text := out.String()
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, text, errb.String())
	}
	for _, want := range []string{
		"[api_0] members of ring roles: [api_0@127.0.0.1 worker_0@127.0.0.1 worker_1@127.0.0.1]; of ring jobs: [worker_0@127.0.0.1 worker_1@127.0.0.1]",
		"[api_0]   api_0@127.0.0.1 roles [api] meta [pid=",
		"[api_0]   worker_0@127.0.0.1 roles [worker] meta [pid=",
		"[api_0]   worker_1@127.0.0.1 roles [worker] meta [pid=",
		"roles: killing worker_1@127.0.0.1 (SIGKILL)",
		"[api_0] members of ring roles: [api_0@127.0.0.1 worker_0@127.0.0.1]; of ring jobs: [worker_0@127.0.0.1]",
		"roles: both rounds held",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in:\n%s", want, text)
		}
	}
	round1 := regexp.MustCompile(`round 1 ok: 100 jobs routed by api_0@127.0.0.1, each to the worker owning it: worker_0@127.0.0.1 (\d+), worker_1@127.0.0.1 (\d+)`)
	if m := round1.FindStringSubmatch(text); m == nil || m[1] == "0" || m[2] == "0" {
		t.Errorf("round 1 did not reach both workers:\n%s", text)
	}
	round2 := regexp.MustCompile(`(?m)round 2 ok: 100 jobs routed by api_0@127.0.0.1, each to the worker owning it: worker_0@127.0.0.1 100($| \()`)
	if !round2.MatchString(text) {
		t.Errorf("round 2 did not send every job to worker_0:\n%s", text)
	}
	// Built with -race, a node that saw a data race in the example says so
	// (Ergo has races of its own at node stop).
	for _, report := range strings.Split(text, "WARNING: DATA RACE")[1:] {
		if end := strings.Index(report, "=================="); end > 0 {
			report = report[:end]
		}
		if strings.Contains(report, "examples/roles") {
			t.Errorf("data race in the example:\n%s", report)
		}
	}
}
