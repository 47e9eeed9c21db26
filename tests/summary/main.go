// Command summary is the reading half of tests/run.
//
//	go test -json ./... | summary stream
//
// prints what a plain `go test` prints (a line per package, the output of
// failed tests only) while the JSON goes to a log, and
//
//	summary report -tests LOG [-phases FILE] [-bench FILE]
//
// prints the end of a run: each phase with its time and result, the
// skipped tests with their reasons, the headline benchmark figures beside
// their targets, and last the plain line `packages: N passed, N failed`.
// report exits 1 when a phase or a package failed.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: summary stream | summary report -tests LOG [-phases FILE] [-bench FILE]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "stream":
		stream(os.Stdin, os.Stdout)
	case "report":
		os.Exit(report(os.Args[2:], os.Stdout))
	default:
		fmt.Fprintf(os.Stderr, "summary: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

// event is one line of `go test -json` (test2json), build events included.
type event struct {
	Action     string
	Package    string
	ImportPath string
	Test       string
	Elapsed    float64
	Output     string
}

// run is what a -json log says.
type run struct {
	passed, failed []string
	skips          []skip
}

type skip struct{ pkg, test, reason string }

// reader follows a -json stream: it keeps each running test's output, so
// a failure can be shown and a skip explained.
type reader struct {
	out   map[[2]string][]string
	res   run
	print func(string) // where shown lines go (nil: nowhere)
}

func newReader(print func(string)) *reader {
	return &reader{out: map[[2]string][]string{}, print: print}
}

func (r *reader) show(s string) {
	if r.print != nil {
		r.print(s)
	}
}

// line takes one line of the stream; lines that are not JSON (the go
// command's own messages) are shown as they are.
func (r *reader) line(l string) {
	var e event
	if !strings.HasPrefix(l, "{") || json.Unmarshal([]byte(l), &e) != nil {
		r.show(l + "\n")
		return
	}
	key := [2]string{e.Package, e.Test}
	switch e.Action {
	case "build-output":
		r.show(e.Output)
	case "output":
		r.out[key] = append(r.out[key], e.Output)
		if e.Test == "" && isResultLine(e.Output) {
			r.show(e.Output)
		}
	case "fail":
		if e.Test != "" {
			for _, o := range r.out[key] {
				if !strings.HasPrefix(o, "=== ") {
					r.show(o)
				}
			}
		} else {
			r.res.failed = append(r.res.failed, e.Package)
			// A package that failed outside any test (a panic, a
			// timeout, a build error) says why at package level.
			var why []string
			for _, o := range r.out[key] {
				if !isResultLine(o) && !strings.HasPrefix(o, "FAIL") {
					why = append(why, o)
				}
			}
			r.show(strings.Join(why, ""))
		}
		delete(r.out, key)
	case "pass":
		if e.Test == "" {
			r.res.passed = append(r.res.passed, e.Package)
		}
		delete(r.out, key)
	case "skip":
		if e.Test != "" {
			r.res.skips = append(r.res.skips, skip{e.Package, e.Test, skipReason(r.out[key])})
		}
		delete(r.out, key)
	}
}

// isResultLine: the line plain `go test` prints per package.
func isResultLine(s string) bool {
	return strings.HasPrefix(s, "ok  ") || strings.HasPrefix(s, "FAIL\t") || strings.HasPrefix(s, "?   ")
}

// skipReason is what a skipped test said, without the harness's lines.
func skipReason(lines []string) string {
	var why []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		// "file_test.go:12: reason" → "reason (file_test.go:12)"
		if m := fileLine.FindStringSubmatch(t); m != nil {
			t = m[2] + " (" + m[1] + ")"
		}
		why = append(why, t)
	}
	if len(why) == 0 {
		return "(no reason given)"
	}
	return strings.Join(why, "; ")
}

var fileLine = regexp.MustCompile(`^(\S+\.go:\d+): (.*)$`)

func stream(in io.Reader, out io.Writer) {
	r := newReader(func(s string) { fmt.Fprint(out, s) })
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		r.line(sc.Text())
	}
}

func readLog(path string) (run, error) {
	f, err := os.Open(path)
	if err != nil {
		return run{}, err
	}
	defer f.Close()
	r := newReader(nil)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		r.line(sc.Text())
	}
	return r.res, sc.Err()
}

func report(args []string, w io.Writer) int {
	fs := flag.NewFlagSet("summary report", flag.ContinueOnError)
	tests := fs.String("tests", "", "the `go test -json` log")
	phases := fs.String("phases", "", "phase lines: name<TAB>seconds<TAB>result")
	bench := fs.String("bench", "", "the output of bench/run -short")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	code := 0
	fmt.Fprintln(w, "== summary")
	if *phases != "" {
		b, err := os.ReadFile(*phases)
		if err != nil {
			fmt.Fprintln(w, "phases: cannot read:", err)
		} else {
			fmt.Fprintln(w, "phases:")
			for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				f := strings.SplitN(l, "\t", 3)
				if len(f) != 3 {
					continue
				}
				fmt.Fprintf(w, "  %-34s %6ss  %s\n", f[0], f[1], f[2])
				if strings.HasPrefix(f[2], "FAILED") {
					code = 1
				}
			}
		}
	}
	var res run
	if *tests != "" {
		var err error
		if res, err = readLog(*tests); err != nil {
			fmt.Fprintln(w, "tests: cannot read the log:", err)
			code = 1
		}
	}
	sort.Slice(res.skips, func(i, j int) bool {
		if res.skips[i].pkg != res.skips[j].pkg {
			return res.skips[i].pkg < res.skips[j].pkg
		}
		return res.skips[i].test < res.skips[j].test
	})
	fmt.Fprintf(w, "skipped tests: %d\n", len(res.skips))
	for _, s := range res.skips {
		fmt.Fprintf(w, "  %s %s: %s\n", strings.TrimPrefix(s.pkg, "github.com/cloister-go/cloister/"), s.test, s.reason)
	}
	if len(res.failed) > 0 {
		code = 1
		fmt.Fprintln(w, "failed packages:")
		for _, p := range res.failed {
			fmt.Fprintln(w, "  "+p)
		}
	}
	if *bench != "" {
		benchFigures(w, *bench)
	}
	fmt.Fprintf(w, "packages: %d passed, %d failed\n", len(res.passed), len(res.failed))
	return code
}

// benchFigures prints, per section of the benchmark report bench/run
// wrote, its target and its figures (benchmark lines and table rows). The
// report's path is in bench/run's output ("wrote PATH"); when there is
// none, the output itself is read.
func benchFigures(w io.Writer, benchOut string) {
	b, err := os.ReadFile(benchOut)
	if err != nil {
		fmt.Fprintln(w, "benchmarks: cannot read bench/run's output:", err)
		return
	}
	text := string(b)
	if m := wrote.FindStringSubmatch(text); m != nil {
		if rb, err := os.ReadFile(m[1]); err == nil {
			fmt.Fprintf(w, "benchmarks (bench/run -short; smoke figures, full report in %s):\n", m[1])
			text = string(rb)
		}
	} else {
		fmt.Fprintln(w, "benchmarks (bench/run -short):")
	}
	shown := 0
	for _, sec := range strings.Split(text, "\n## ") {
		title, body, _ := strings.Cut(sec, "\n")
		if strings.HasPrefix(title, "Detail") || strings.HasPrefix(title, "# ") {
			continue
		}
		var figs []string
		target := ""
		for _, l := range strings.Split(body, "\n") {
			t := strings.TrimSpace(l)
			switch {
			case strings.HasPrefix(t, "Target:"):
				target = t
			case strings.HasPrefix(t, "Benchmark"):
				figs = append(figs, benchLine(t))
			case strings.HasPrefix(t, "| ") && !strings.HasPrefix(t, "| N ") && len(t) > 2 && t[2] >= '0' && t[2] <= '9':
				figs = append(figs, t)
			}
		}
		if len(figs) == 0 {
			continue
		}
		fmt.Fprintf(w, "  %s\n", title)
		if target != "" {
			fmt.Fprintf(w, "    %s\n", target)
		}
		for i, f := range figs {
			if i == maxFigures {
				fmt.Fprintf(w, "    (%d more in the report)\n", len(figs)-i)
				break
			}
			fmt.Fprintf(w, "    %s\n", f)
		}
		shown++
	}
	if shown == 0 {
		fmt.Fprintln(w, "  (no figures found)")
	}
}

// maxFigures bounds the lines shown per section: a summary, not the report.
const maxFigures = 8

var wrote = regexp.MustCompile(`(?m)wrote (\S+\.md)\s*$`)

// benchLine keeps a benchmark's name and its ns/op, B/op and allocs/op.
func benchLine(l string) string {
	f := strings.Fields(l)
	if len(f) < 4 {
		return l
	}
	out := []string{f[0]}
	for i := 2; i+1 < len(f); i += 2 {
		out = append(out, f[i]+" "+f[i+1])
	}
	return strings.Join(out, "  ")
}
