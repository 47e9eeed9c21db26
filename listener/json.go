package listener

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// MarshalJSON writes the ring with its hash as 16 hex digits in a string,
// the format `cloister status` prints: a JSON number would lose the low
// bits of a 64-bit hash in most JSON readers.
func (r Ring) MarshalJSON() ([]byte, error) {
	type plain Ring
	return json.Marshal(struct {
		plain
		Hash string `json:"hash"`
	}{plain(r), fmt.Sprintf("%016x", r.Hash)})
}

// UnmarshalJSON reads what MarshalJSON writes (and a plain number).
func (r *Ring) UnmarshalJSON(b []byte) error {
	type plain Ring
	var v struct {
		plain
		Hash json.RawMessage `json:"hash"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*r = Ring(v.plain)
	r.Hash = 0
	if len(v.Hash) == 0 || string(v.Hash) == "null" {
		return nil
	}
	var s string
	if json.Unmarshal(v.Hash, &s) == nil {
		h, err := strconv.ParseUint(s, 16, 64)
		if err != nil {
			return fmt.Errorf("listener: ring hash %q: want 16 hex digits", s)
		}
		r.Hash = h
		return nil
	}
	return json.Unmarshal(v.Hash, &r.Hash)
}
