package app

import (
	"errors"
	"github.com/cloister-go/cloister/internal/errs"
	"strings"
	"testing"
	"time"

	"github.com/cloister-go/cloister/actors"
)

func TestDefaultsApplied(t *testing.T) {
	o := Options{Consensus: 1}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if o.OTPApp != "cloister" || o.Ring != "cloister" || o.MonitorName != actors.MonitorName ||
		o.Reconcile != time.Second || o.Heartbeat != 500*time.Millisecond || o.Engine == nil {
		t.Fatalf("defaults not applied: %+v", o)
	}
	d := actors.DefaultOptions()
	if d.Consensus != 1 || !d.Magic || d.OTPApp != "cloister" {
		t.Fatalf("DefaultOptions: %+v", d)
	}
}

// Derived defaults follow what they derive from when set after
// DefaultOptions: the ring is named after OTPApp, the flap grace fits
// a shorter RemoveAfter.
func TestDerivedDefaultsFollow(t *testing.T) {
	o := actors.DefaultOptions()
	o.OTPApp = "shop"
	o.RemoveAfter = time.Second
	o.SuspectAfter = 800 * time.Millisecond
	o.Heartbeat = 200 * time.Millisecond
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if o.Ring != "shop" || o.FlapGrace != 500*time.Millisecond {
		t.Fatalf("ring %q flap grace %s", o.Ring, o.FlapGrace)
	}
}

func TestBadOptionsNameTheOption(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Options)
		want   string
	}{
		{"consensus 0", func(o *Options) { o.Consensus = 0 }, "Consensus = 0"},
		{"negative consensus", func(o *Options) { o.Consensus = -2 }, "Consensus = -2"},
		{"empty sentry list", func(o *Options) { o.Sentry = []string{} }, "Sentry"},
		{"empty sentry entry", func(o *Options) { o.Sentry = []string{"a@127.0.0.1", ""} }, "Sentry[1]"},
		{"malformed node name", func(o *Options) { o.Sentry = []string{"no-at-sign"} }, `Sentry[0] = "no-at-sign"`},
		{"two at signs", func(o *Options) { o.Sentry = []string{"a@b@c"} }, "Sentry[0]"},
		{"space in a name", func(o *Options) { o.Sentry = []string{"a b@h"} }, "Sentry[0]"},
		{"name over 255 bytes", func(o *Options) { o.Sentry = []string{"a@" + strings.Repeat("h", 254)} }, "at most 255"},
		{"duplicate sentry", func(o *Options) { o.Sentry = []string{"a@h", "b@h", "a@h"} }, `Sentry[2] = "a@h": listed twice (also Sentry[0])`},
		{"bad monitor name", func(o *Options) { o.MonitorName = "a b" }, "MonitorName"},
		{"both sentry and service", func(o *Options) { o.Sentry = []string{"a@h"}; o.Service = "svc.local" }, "not both"},
		{"bad service", func(o *Options) { o.Service = "a b" }, "Service"},
		{"bad otp app", func(o *Options) { o.OTPApp = "my app" }, "OTPApp"},
		{"duplicate group", func(o *Options) { o.Groups = []string{"cloister"} }, "Groups[0]"},
		{"negative timeout", func(o *Options) { o.StartTimeout = -time.Second }, "StartTimeout"},
		{"suspect after remove", func(o *Options) { o.SuspectAfter = 10 * time.Second }, "SuspectAfter"},
		{"heartbeat too slow", func(o *Options) { o.Heartbeat = 4 * time.Second }, "Heartbeat"},
		{"nil child", func(o *Options) { o.AdditionalModules = []actors.Child{{Name: "x"}} }, "AdditionalModules[0]"},
		{"dns server without port", func(o *Options) { o.DNSServer = "127.0.0.1" }, "DNSServer"},
		{"negative flap grace", func(o *Options) { o.FlapGrace = -time.Second }, "FlapGrace"},
		{"flap grace beyond remove", func(o *Options) { o.FlapGrace = 6 * time.Second }, "FlapGrace"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := actors.DefaultOptions()
			c.mutate(&o)
			err := o.Validate()
			if err == nil {
				t.Fatal("want an error")
			}
			if !errors.Is(err, errs.ErrInvalidOption) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not name %q", err, c.want)
			}
			if _, err := New(o); err == nil {
				t.Fatal("New accepted what Validate rejected")
			}
		})
	}
}
