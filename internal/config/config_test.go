package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloister-go/cloister/app"
)

func TestTemplateLoadsAndValidates(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cloister.yaml")
	if err := os.WriteFile(p, []byte(Template), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	o := f.Options()
	if o.Consensus != 2 || len(o.Sentry) != 3 || o.Heartbeat != 500*time.Millisecond || o.OTPApp != "cloister" {
		t.Fatalf("options %+v", o)
	}
	if f.Node.Name != "cloister_0@127.0.0.1" || f.NodeOptions().EPMDPort != 4369 {
		t.Fatalf("node %+v", f.Node)
	}
}

func TestUnknownKeyRejected(t *testing.T) {
	_, err := Parse(strings.NewReader("otp_app: x\nconsensuss: 3\n"))
	if err == nil || !strings.Contains(err.Error(), "consensuss") {
		t.Fatalf("want an error naming the unknown key, got %v", err)
	}
}

func TestBadValuesNamed(t *testing.T) {
	dir := t.TempDir()
	for body, want := range map[string]string{
		"consensus: 0\n":                 "Consensus = 0",
		"heartbeat: soon\n":              `"soon" is not a duration`,
		"sentry: [nohost]\n":             `Sentry[0] = "nohost"`,
		"node:\n  name: bad\n":           "node.name",
		"engine: md5\n":                  `engine "md5"`,
		"node:\n  epmd_port: notanumber": "line 2: cannot unmarshal !!str `notanumber`",
	} {
		p := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(p)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: want error containing %q, got %v", body, want, err)
		}
		if strings.HasPrefix(body, "consensus") && !errors.Is(err, app.ErrInvalidOption) {
			t.Errorf("not an ErrInvalidOption: %v", err)
		}
	}
}

func TestEmptyFileMeansDefaults(t *testing.T) {
	f, err := Parse(strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	o := f.Options()
	if err := o.Validate(); err != nil || o.Consensus != 1 {
		t.Fatalf("%v %+v", err, o)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Template)
	f.Add("consensus: 3\nsentry: [a@b]\n")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(strings.NewReader(s))
		if err != nil {
			return
		}
		o := c.Options()
		_ = o.Validate() // must not panic
	})
}

func TestEngineByName(t *testing.T) {
	names := map[string]bool{}
	for _, n := range []string{"consistent", "libring", "libring-otp26"} {
		e := EngineByName(n)
		if e == nil {
			t.Fatalf("%q: no engine", n)
		}
		names[e.Name()] = true
	}
	if len(names) != 3 {
		t.Fatalf("engine names %v: want three different engines", names)
	}
	if EngineByName("").Name() != EngineByName("consistent").Name() {
		t.Fatal(`"" is not the default engine`)
	}
	if EngineByName("libring-otp25") != nil {
		t.Fatal("an unknown engine name must give nil")
	}
}
