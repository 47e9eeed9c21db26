package interop

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// The run's capability x OTP table, for docs/interop.md: printed with -v
// and written to $CLOISTER_INTEROP_REPORT when set.

var columns = []string{"25", "27", "29"}

type cell struct {
	status string // pass, FAIL, skip
	detail string
}

var (
	reportMu sync.Mutex
	rowOrder []string
	cells    = map[string]map[string]cell{}
)

func record(capability, rel, status, detail string) {
	reportMu.Lock()
	defer reportMu.Unlock()
	if cells[capability] == nil {
		cells[capability] = map[string]cell{}
		rowOrder = append(rowOrder, capability)
	}
	cells[capability][rel] = cell{status, detail}
}

// check runs fn as subtest capability of the row for release rel and
// records its outcome; fn returns the detail to show (timings). A failed
// check does not stop the row: the next capability still runs.
func check(t *testing.T, rel, capability string, fn func(t *testing.T) string) bool {
	t.Helper()
	var detail string
	var skipped bool
	start := time.Now()
	ok := t.Run(capability, func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		detail = fn(t)
	})
	took := time.Since(start)
	switch {
	case skipped:
		record(capability, rel, "skip", detail)
	case ok:
		if detail == "" {
			detail = took.Round(time.Millisecond).String()
		}
		record(capability, rel, "pass", detail)
	default:
		record(capability, rel, "FAIL", detail)
	}
	return ok
}

func writeReport() {
	reportMu.Lock()
	defer reportMu.Unlock()
	if len(rowOrder) == 0 {
		return
	}
	var b strings.Builder
	b.WriteString("| capability |")
	for _, c := range columns {
		fmt.Fprintf(&b, " OTP %s |", c)
	}
	b.WriteString("\n|---|")
	for range columns {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range rowOrder {
		fmt.Fprintf(&b, "| %s |", r)
		for _, c := range columns {
			x, ok := cells[r][c]
			switch {
			case !ok && missing[c] != "":
				b.WriteString(" skipped (no runtime) |")
			case !ok:
				b.WriteString(" — |")
			case x.detail != "":
				fmt.Fprintf(&b, " %s, %s |", x.status, x.detail)
			default:
				fmt.Fprintf(&b, " %s |", x.status)
			}
		}
		b.WriteString("\n")
	}
	if testing.Verbose() {
		fmt.Println("\n" + b.String())
	}
	if p := os.Getenv("CLOISTER_INTEROP_REPORT"); p != "" {
		_ = os.WriteFile(p, []byte(b.String()), 0o644)
	}
}

func ms(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%d µs", d.Microseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
	}
	return d.Round(100 * time.Millisecond).String()
}
