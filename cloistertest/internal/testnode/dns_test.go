package main

import (
	"context"
	"net"
	"testing"
	"time"
)

// The positive control of the run-time check that Ergo's call-home stays
// off: the very lookup Ergo's metrics make (net.LookupTXT of its host, on
// net.DefaultResolver) is recorded, and never sent.
func TestDNSRecorderSeesAndBlocksTheCallHome(t *testing.T) {
	old := net.DefaultResolver
	defer func() { net.DefaultResolver = old }()
	r := recordDNS(metricsHost)
	_, err := net.LookupTXT("metrics.ergo.services")
	if err == nil {
		t.Fatal("the blocked lookup succeeded")
	}
	all, blocked := r.Lookups()
	if len(blocked) != 1 || blocked[0] != "metrics.ergo.services" || len(all) == 0 {
		t.Fatalf("recorded %v, blocked %v", all, blocked)
	}
	// Another name is recorded and let through (its answer does not matter).
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _ = net.DefaultResolver.LookupHost(ctx, "cloister-test.invalid")
	all, _ = r.Lookups()
	found := false
	for _, n := range all {
		found = found || n == "cloister-test.invalid"
	}
	if !found {
		t.Fatalf("lookup of another name not recorded: %v", all)
	}
}
