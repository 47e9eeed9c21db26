package testenv

import "time"

// TB is the part of testing.TB that WaitFor uses. Taking it rather than
// testing.TB keeps the testing package out of the programs that import
// testenv (the node program the harness runs).
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// PollEvery is how often Poll, WaitFor and HoldsUntil check their
// condition: often enough that a wait ends close to the moment the
// condition holds, rarely enough to cost nothing on a loaded machine.
const PollEvery = 20 * time.Millisecond

// Poll checks cond every PollEvery until it holds, and reports whether it
// held before timeout passed (it checks once more at the deadline). The
// timeout is a generous bound on a wait, never a measurement: a test that
// needs to know when something happened takes time.Now() after Poll.
func Poll(timeout time.Duration, cond func() bool) bool {
	return PollInterval(timeout, PollEvery, cond)
}

// PollInterval is Poll checking every interval, for a condition that is
// costly to check (a garbage collection in a node process).
func PollInterval(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if !time.Now().Before(deadline) {
			return cond()
		}
		time.Sleep(interval)
	}
	return true
}

// WaitFor polls cond like Poll and fails t, naming what it waited for,
// unless cond holds within timeout.
func WaitFor(t TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Poll(timeout, cond) {
		t.Fatalf("gave up after %s waiting for %s", timeout, what)
	}
}

// HoldsUntil checks cond every PollEvery until deadline and reports
// whether it held at every check (it stops at the first that fails). It is
// for "nothing happens" windows whose length the configuration implies:
// the deadline is when a wrong decision would have shown, and the
// condition is checked all along rather than once after a sleep.
func HoldsUntil(deadline time.Time, cond func() bool) bool {
	for {
		if !cond() {
			return false
		}
		if !time.Now().Before(deadline) {
			return true
		}
		time.Sleep(min(PollEvery, time.Until(deadline)))
	}
}
