package app

import (
	"errors"
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
	d := DefaultOptions()
	if d.Consensus != 1 || !d.Magic || d.OTPApp != "cloister" {
		t.Fatalf("DefaultOptions: %+v", d)
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
			o := DefaultOptions()
			c.mutate(&o)
			err := o.Validate()
			if err == nil {
				t.Fatal("want an error")
			}
			if !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not name %q", err, c.want)
			}
			if _, err := New(o); err == nil {
				t.Fatal("New accepted what Validate rejected")
			}
		})
	}
}
