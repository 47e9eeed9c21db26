package listener

import (
	"encoding/json"
	"strings"
	"testing"
)

// A hash above 2^53 survives JSON: it is a hex string, as in `cloister
// status --json`, never a number a JSON reader rounds.
func TestRingHashIsAHexString(t *testing.T) {
	r := Ring{Members: []string{"a@h"}, Epoch: 3, Hash: 0xfedcba9876543211}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"hash":"fedcba9876543211"`) {
		t.Fatalf("hash not a hex string: %s", b)
	}
	var back Ring
	if err := json.Unmarshal(b, &back); err != nil || back.Hash != r.Hash || back.Epoch != 3 || len(back.Members) != 1 {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"hash":42}`), &back); err != nil || back.Hash != 42 {
		t.Fatalf("number: %+v %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"hash":"xyz"}`), &back); err == nil {
		t.Fatal("a bad hash was accepted")
	}
}
