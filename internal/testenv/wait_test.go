package testenv

import (
	"fmt"
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	n := 0
	if !Poll(10*time.Second, func() bool { n++; return n == 3 }) || n != 3 {
		t.Fatalf("Poll stopped after %d checks", n)
	}
	start := time.Now()
	if Poll(100*time.Millisecond, func() bool { return false }) {
		t.Fatal("Poll of a false condition held")
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("Poll gave up after %s, before its timeout", d)
	}
}

func TestHoldsUntil(t *testing.T) {
	deadline := time.Now().Add(100 * time.Millisecond)
	n := 0
	if !HoldsUntil(deadline, func() bool { n++; return true }) || time.Now().Before(deadline) || n < 2 {
		t.Fatalf("a true condition: %d checks, ended %s before the deadline", n, time.Until(deadline))
	}
	n = 0
	if HoldsUntil(time.Now().Add(10*time.Second), func() bool { n++; return n < 3 }) || n != 3 {
		t.Fatalf("a condition failing at the third check: %d checks", n)
	}
}

type fatal struct{ msg string }

func (f *fatal) Helper()                           {}
func (f *fatal) Fatalf(format string, args ...any) { f.msg = fmt.Sprintf(format, args...) }

func TestWaitForNamesWhatItWaitedFor(t *testing.T) {
	f := &fatal{}
	WaitFor(f, 50*time.Millisecond, "the moon", func() bool { return false })
	if f.msg != "gave up after 50ms waiting for the moon" {
		t.Fatalf("message %q", f.msg)
	}
}
