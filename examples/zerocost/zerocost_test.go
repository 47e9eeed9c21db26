package main

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/cloister-go/cloister/internal/localcluster"
	"github.com/cloister-go/cloister/internal/testenv"
)

// TestMain lets the test binary be the example's worker too: the
// coordinator re-executes os.Executable() as `node ...` (and `epmd ...`
// when Erlang's epmd is missing), exactly as the example binary does.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "node":
			os.Exit(runWorker(os.Args[2:]))
		case "epmd":
			os.Exit(localcluster.EPMDMain("zerocost", os.Args[2:]))
		}
	}
	os.Exit(m.Run())
}

// TestZeroCostSmall runs the whole example with 20,000 keys: 3 node
// processes, +1, −1, every check of the example in force.
func TestZeroCostSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 4 node processes")
	}
	var out bytes.Buffer
	logs := &testenv.Buffer{}
	code := run([]string{"-keys", "20000", "-batch", "3000", "-v"}, &out, logs)
	t.Log("\n" + out.String())
	if code != 0 {
		t.Fatalf("exit status %d\nnode logs:\n%s", code, logs.String())
	}
	for _, want := range []string{
		"== 1. 3 nodes formed",
		"== 2. zc_4@127.0.0.1 joined",
		"== 3. zc_2@127.0.0.1 drained",
		"ok: every one of the 20,000 keys is owned by exactly one of 3 nodes",
		"ok: every one of the 20,000 keys is owned by exactly one of 4 nodes",
		"work counts all 2",
		"PASS: every check held",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// Both topology changes report how close they came to the ideal share.
	if n := len(regexp.MustCompile(`ideal share 1/4 = 5,000; ratio 1?[0-9.]+`).FindAllString(out.String(), -1)); n != 2 {
		t.Errorf("%d moved-key ratios reported, want 2", n)
	}
	// Workers built with -race report races in our code on stderr. (Ergo's
	// own data races when a node stops are not ours to fail on.)
	for _, report := range strings.Split(logs.String(), "WARNING: DATA RACE")[1:] {
		if end := strings.Index(report, "=================="); end > 0 {
			report = report[:end]
		}
		if strings.Contains(report, "examples/zerocost") {
			t.Errorf("data race in the example:\n%s", report)
		}
	}
}

func TestBadFlagsExitTwo(t *testing.T) {
	for _, args := range [][]string{{"-keys", "0"}, {"-nope"}, {"extra"}, {"-batch", "-1"}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
	}
}

func TestKeysRoundTrip(t *testing.T) {
	keys := makeKeys(1234)
	if len(keys) != 1234 || keys[0] != "entity:0" || keys[1233] != "entity:1233" {
		t.Fatalf("keys %q .. %q", keys[0], keys[len(keys)-1])
	}
	for i, k := range keys {
		if keyIndex(k) != i {
			t.Fatalf("keyIndex(%q) = %d, want %d", k, keyIndex(k), i)
		}
	}
	for _, bad := range []string{"", "entity:", "entity:-1", "entity:x", "user:1"} {
		if keyIndex(bad) != -1 {
			t.Errorf("keyIndex(%q) = %d, want -1", bad, keyIndex(bad))
		}
	}
}

func TestStoreBatchesCarryOnlyHeldEntitiesAndSurviveARetry(t *testing.T) {
	src, dst := newStore(), newStore()
	src.seed([]string{"entity:1", "entity:2", "entity:3"})
	src.m["entity:2"] = 41
	buf, sent := src.encode([]string{"entity:2", "entity:9", "entity:3"})
	if !slices.Equal(sent, []string{"entity:2", "entity:3"}) {
		t.Fatalf("sent %q, want the held ones only", sent)
	}
	for range 2 { // a retried batch is harmless
		if n, err := dst.put(buf); err != nil || n != 2 {
			t.Fatalf("put = %d, %v", n, err)
		}
	}
	if dst.len() != 2 || dst.m["entity:2"] != 41 || dst.m["entity:3"] != 0 {
		t.Errorf("destination holds %v", dst.m)
	}
	src.drop(sent)
	if src.len() != 1 || !slices.Equal(src.missing([]string{"entity:1", "entity:2"}), []string{"entity:2"}) {
		t.Errorf("source holds %v", src.m)
	}
	for _, bad := range [][]byte{{0x05, 'a'}, {0x01, 'a'}, {0x80}} {
		if _, err := newStore().put(bad); !errors.Is(err, errBadBatch) {
			t.Errorf("put(%x) = %v, want errBadBatch", bad, err)
		}
	}
}

func TestHoldersFindsMissingAndDuplicateKeys(t *testing.T) {
	bitmap := func(idx ...int) string {
		b := make([]byte, 2) // 10 keys
		for _, i := range idx {
			b[i/8] |= 1 << (i % 8)
		}
		return base64.StdEncoding.EncodeToString(b)
	}
	rs := []report{
		{nodeState: nodeState{Node: "a"}, Bitmap: bitmap(0, 1, 2, 3, 9)},
		{nodeState: nodeState{Node: "b"}, Bitmap: bitmap(3, 4, 5, 6, 7)},
	}
	counts, err := holders(rs, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []uint8{1, 1, 1, 2, 1, 1, 1, 1, 0, 1}
	if !slices.Equal(counts, want) {
		t.Errorf("counts %v, want %v", counts, want)
	}
	if _, err := holders(rs, 30); err == nil {
		t.Error("a bitmap of the wrong size was accepted")
	}
}

func TestVerifyFailsOnADoubleHeldKey(t *testing.T) {
	var out bytes.Buffer
	c := &coord{out: &out, nkeys: 2}
	one := base64.StdEncoding.EncodeToString([]byte{0b01})
	both := base64.StdEncoding.EncodeToString([]byte{0b11})
	c.verify([]report{
		{nodeState: nodeState{Node: "a", Held: 1}, Owned: 1, Bitmap: one},
		{nodeState: nodeState{Node: "b", Held: 2}, Owned: 1, Bitmap: both},
	}, []string{"a", "b"})
	if len(c.failed) == 0 || !strings.Contains(strings.Join(c.failed, "\n"), "1 by more than one") {
		t.Errorf("failures %q, want a key held twice reported", c.failed)
	}
}
