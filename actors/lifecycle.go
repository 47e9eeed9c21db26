package actors

import "github.com/cloister-go/cloister/internal/errs"

import "time"

// MarkStopped ends the cluster for good, as a Manager that gave up does
// (rings emptied, snapshot "stopped", Stopped closed), with err as its Err:
// the facade calls it when its program stops the cluster (err nil: a
// *cloister.StoppedError "stop") and when a start fails (the start's error). The
// first end wins.
func (c *shared) MarkStopped(err error) {
	if err == nil {
		err = &errs.StoppedError{Reason: "stop", Detail: "stopped by its program", At: time.Now()}
	}
	c.stopWith(err)
}

// Halted reports whether the cluster has ended (Err is not nil), in one
// atomic load: for lookups that must not lock or allocate.
func (c *shared) Halted() bool { return c.life.halted.Load() }
