package listener

import "time"

// Change is one change of the Monitor's state, as published.
type Change struct {
	From State     `json:"from"`
	To   State     `json:"to"`
	At   time.Time `json:"at"`
}
