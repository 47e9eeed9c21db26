package statem

// StaleTimeouts reports how many stale timer messages p dropped, so tests
// can show the stale path really ran.
func StaleTimeouts(p *Process) uint64 { return p.stale.Load() }
