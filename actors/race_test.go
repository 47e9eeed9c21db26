//go:build race

package actors

// raceEnabled: the test binary runs under the race detector.
const raceEnabled = true
