package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A real `go test -json` run of a package with a pass, a skip and a
// failure: stream shows the failure and the package line only, report
// lists the skip with its reason and ends with the packages line.
func TestStreamAndReportOfARealRun(t *testing.T) {
	cmd := exec.Command("go", "test", "-json", "-count=1", "./testdata/sample")
	cmd.Env = append(os.Environ(), "SUMMARY_SAMPLE_FAIL=1")
	log, _ := cmd.Output() // exits 1: a test fails
	if !bytes.Contains(log, []byte(`"Action":"skip"`)) {
		t.Fatalf("no skip event in:\n%s", log)
	}
	var shown bytes.Buffer
	stream(bytes.NewReader(log), &shown)
	s := shown.String()
	if !strings.Contains(s, "the failure a reader must see") || !strings.Contains(s, "FAIL\t") {
		t.Errorf("stream hides the failure:\n%s", s)
	}
	if strings.Contains(s, "fine") || strings.Contains(s, "=== RUN") {
		t.Errorf("stream shows passing tests' output:\n%s", s)
	}

	dir := t.TempDir()
	logPath := filepath.Join(dir, "tests.json")
	phases := filepath.Join(dir, "phases")
	bench := filepath.Join(dir, "bench.out")
	benchMD := filepath.Join(dir, "bench.md")
	write(t, logPath, string(log))
	write(t, phases, "go vet\t12\tok\ngo test -race\t301\tFAILED (1)\ndocker end-to-end\t0\tskipped: no Docker engine\n")
	write(t, benchMD, "# Benchmarks\n\n## Whois: ring lookups\n\nTarget: 0 allocs/op\n\n```\n"+
		"BenchmarkOwner/members=3-2   \t  200\t  41.5 ns/op\t  0 B/op\t  0 allocs/op\n```\n\n"+
		"## Cluster assembly\n\nTarget: N=3 ≤ 300 ms\n\n| N | assembly | kill |\n|---|---|---|\n| 3 | 88ms (80ms–90ms) | 12ms (max 15ms) |\n\n"+
		"## Detail: bench/ring.md\n\n| 9 | not a headline |\n")
	write(t, bench, "noise\nbench/run: wrote "+benchMD+"\n")
	var out bytes.Buffer
	code := report([]string{"-tests", logPath, "-phases", phases, "-bench", bench}, &out)
	r := out.String()
	if code != 1 {
		t.Errorf("report exit %d with a failed phase and package, want 1", code)
	}
	for _, want := range []string{
		"go test -race", "301s", "FAILED (1)",
		"TestSkips: no Docker engine answers (sample_test.go:10)",
		"Target: 0 allocs/op", "BenchmarkOwner/members=3-2  41.5 ns/op  0 B/op  0 allocs/op",
		"Target: N=3 ≤ 300 ms", "| 3 | 88ms (80ms–90ms) | 12ms (max 15ms) |",
	} {
		if !strings.Contains(r, want) {
			t.Errorf("report lacks %q:\n%s", want, r)
		}
	}
	if strings.Contains(r, "not a headline") {
		t.Errorf("report shows detail sections:\n%s", r)
	}
	lines := strings.Split(strings.TrimSpace(r), "\n")
	if last := lines[len(lines)-1]; last != "packages: 0 passed, 1 failed" {
		t.Errorf("last line %q", last)
	}
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
