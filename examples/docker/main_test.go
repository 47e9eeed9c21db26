package main

import (
	"strings"
	"testing"
	"time"

	"github.com/cloister-go/cloister"
)

// clearEnv unsets every variable the example reads, for the test's duration.
func clearEnv(t *testing.T) {
	for _, k := range []string{"CLOISTER_SERVICE", "CLOISTER_SRV", "CLOISTER_DNS_SERVER", "CLOISTER_NODE",
		"CLOISTER_SENTRY", "CLOISTER_CONSENSUS", "CLOISTER_COOKIE", "CLOISTER_OTP_APP", "CLOISTER_HTTP",
		"CLOISTER_START_TIMEOUT", "CLOISTER_FLAP_GRACE", "CLOISTER_EPMD_PORT", "CLOISTER_LISTEN_PORT"} {
		t.Setenv(k, "")
	}
}

func TestServiceModeFromEnvironment(t *testing.T) {
	clearEnv(t)
	t.Setenv("CLOISTER_SERVICE", "cloister_test.local")
	t.Setenv("CLOISTER_CONSENSUS", "3")
	t.Setenv("CLOISTER_OTP_APP", "cloister_test")
	t.Setenv("CLOISTER_COOKIE", "secret")
	t.Setenv("CLOISTER_FLAP_GRACE", "off")
	c, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	o := c.opts
	if o.Service != "cloister_test.local" || o.Consensus != 3 || o.OTPApp != "cloister_test" || o.Ring != "cloister_test" {
		t.Errorf("options: service %q consensus %d otp app %q ring %q", o.Service, o.Consensus, o.OTPApp, o.Ring)
	}
	if !o.Magic || c.name != "" {
		t.Errorf("service mode must derive the name: magic %v, given name %q", o.Magic, c.name)
	}
	if o.FlapGrace != cloister.NoFlapGrace {
		t.Errorf("CLOISTER_FLAP_GRACE=off gave %v", o.FlapGrace)
	}
	if !c.nopts.EmbeddedEPMD || c.nopts.EPMDPort != 4369 || c.nopts.Cookie != "secret" {
		t.Errorf("node options: %+v", c.nopts)
	}
	if c.httpAddr != DefaultHTTP {
		t.Errorf("health address %q, want %q", c.httpAddr, DefaultHTTP)
	}
}

func TestStaticModeFromEnvironment(t *testing.T) {
	clearEnv(t)
	t.Setenv("CLOISTER_NODE", "a@10.0.0.1")
	t.Setenv("CLOISTER_SENTRY", "a@10.0.0.1,b@10.0.0.2")
	t.Setenv("CLOISTER_START_TIMEOUT", "30s")
	t.Setenv("CLOISTER_HTTP", "127.0.0.1:9000")
	c, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if c.name != "a@10.0.0.1" || len(c.opts.Sentry) != 2 || c.opts.StartTimeout != 30*time.Second {
		t.Errorf("name %q sentry %v start timeout %v", c.name, c.opts.Sentry, c.opts.StartTimeout)
	}
	if c.httpAddr != "127.0.0.1:9000" {
		t.Errorf("health address %q", c.httpAddr)
	}
}

func TestBadEnvironmentNamesTheVariable(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, "CLOISTER_SERVICE"},
		{map[string]string{"CLOISTER_SERVICE": "s.local", "CLOISTER_CONSENSUS": "0"}, "CLOISTER_CONSENSUS"},
		{map[string]string{"CLOISTER_SERVICE": "s.local", "CLOISTER_CONSENSUS": "three"}, "CLOISTER_CONSENSUS"},
		{map[string]string{"CLOISTER_SERVICE": "s.local", "CLOISTER_SRV": "yes"}, "CLOISTER_SRV"},
		{map[string]string{"CLOISTER_SERVICE": "s.local", "CLOISTER_START_TIMEOUT": "soon"}, "CLOISTER_START_TIMEOUT"},
		{map[string]string{"CLOISTER_SERVICE": "s.local", "CLOISTER_FLAP_GRACE": "-1s"}, "CLOISTER_FLAP_GRACE"},
		{map[string]string{"CLOISTER_SERVICE": "s.local", "CLOISTER_EPMD_PORT": "70000"}, "CLOISTER_EPMD_PORT"},
		{map[string]string{"CLOISTER_SERVICE": "s.local", "CLOISTER_SENTRY": "a@h"}, "not both"},
		{map[string]string{"CLOISTER_SERVICE": "bad name"}, "Service"},
	} {
		clearEnv(t)
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		_, err := loadConfig()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("env %v: error %v, want one naming %s", tc.env, err, tc.want)
		}
	}
}
