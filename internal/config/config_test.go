package config

import (
	"errors"
	"flag"
	"github.com/cloister-go/cloister/internal/errs"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloister-go/cloister/actors"
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

// Every key of the options and of the node section is shown in the
// template cloister init writes.
func TestTemplateShowsEveryKey(t *testing.T) {
	for _, fl := range append(slices.Clone(optionFields), nodeFields...) {
		if !regexp.MustCompile(`(?m)^[# ]*` + fl.Key + `:`).MatchString(Template) {
			t.Errorf("the template does not show %s", fl.Key)
		}
	}
}

// The options set from code only are these; a new field of actors.Options
// gets a yaml key (and so a flag) or is added here on purpose.
func TestCodeOnlyOptions(t *testing.T) {
	typ := reflect.TypeOf(actors.Options{})
	var codeOnly []string
	for i := 0; i < typ.NumField(); i++ {
		if typ.Field(i).Tag.Get("yaml") == "-" {
			codeOnly = append(codeOnly, typ.Field(i).Name)
		}
	}
	if want := []string{"Listener", "AdditionalModules", "Logger", "Observe", "ObserveFanout"}; !slices.Equal(codeOnly, want) {
		t.Fatalf("options without a key: %v, want %v", codeOnly, want)
	}
	if len(optionFields)+len(codeOnly) != typ.NumField() {
		t.Fatalf("%d keyed + %d code-only != %d fields", len(optionFields), len(codeOnly), typ.NumField())
	}
}

// sample is a valid non-default value of each kind, as text.
func sample(fl field) string {
	switch {
	case fl.typ == durationType:
		return "123ms"
	case fl.typ == engineType:
		return "libring"
	}
	switch fl.typ.Kind() {
	case reflect.Bool:
		if reflect.ValueOf(actors.DefaultOptions()).Field(fl.index).Bool() {
			return "false"
		}
		return "true"
	case reflect.Int:
		return "7"
	case reflect.Uint16:
		return "4370"
	case reflect.Slice:
		return "x_1@h,x_2@h"
	}
	return "sample_1@h"
}

// Every option is settable in the file and as a flag, and both set the
// same value.
func TestEveryOptionSettableInFileAndFlag(t *testing.T) {
	def := reflect.ValueOf(actors.DefaultOptions())
	for _, fl := range optionFields {
		text := sample(fl)
		yamlText := fl.Key + ": " + text + "\n"
		if fl.typ.Kind() == reflect.Slice {
			yamlText = fl.Key + ": [" + text + "]\n"
		}
		f, err := Parse(strings.NewReader(yamlText))
		if err != nil {
			t.Errorf("%s in the file: %v", fl.Key, err)
			continue
		}
		fromFile := reflect.ValueOf(f.Options()).Field(fl.index)
		if reflect.DeepEqual(fromFile.Interface(), def.Field(fl.index).Interface()) {
			t.Errorf("%s: %q in the file left the default %v", fl.Key, text, fromFile)
		}

		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		flags := BindFlags(fs)
		if err := fs.Parse([]string{"-" + fl.Flag + "=" + text}); err != nil {
			t.Errorf("-%s: %v", fl.Flag, err)
			continue
		}
		o := actors.DefaultOptions()
		flags.Apply(&o)
		fromFlag := reflect.ValueOf(o).Field(fl.index)
		if format(fromFlag) != format(fromFile) {
			t.Errorf("%s: file gives %s, flag -%s gives %s", fl.Key, format(fromFile), fl.Flag, format(fromFlag))
		}
	}
}

// Flags not given leave what the file set.
func TestFlagsOverrideOnlyWhatIsGiven(t *testing.T) {
	f, err := Parse(strings.NewReader("consensus: 3\nheartbeat: 200ms\n"))
	if err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	flags := BindFlags(fs)
	if err := fs.Parse([]string{"-heartbeat", "300ms", "-loopback"}); err != nil {
		t.Fatal(err)
	}
	o := f.Options()
	flags.Apply(&o)
	if o.Consensus != 3 || o.Heartbeat != 300*time.Millisecond || !o.Loopback {
		t.Fatalf("consensus %d heartbeat %s loopback %v", o.Consensus, o.Heartbeat, o.Loopback)
	}
	if err := fs.Parse([]string{"-consensus", "2.5"}); err == nil || !strings.Contains(err.Error(), "whole number") {
		t.Fatalf("-consensus 2.5: %v", err)
	}
}

var goTypeNames = regexp.MustCompile(`config\.File|uint16|!!|int64|time\.Duration|unmarshal|\bstruct\b`)

func TestBadValuesNamed(t *testing.T) {
	dir := t.TempDir()
	for body, want := range map[string]string{
		"consensus: 0\n":                     "line 1: consensus: 0 is not allowed: must be ≥ 1",
		"consensus: 2.5\n":                   `line 1: consensus: "2.5" is not allowed: want a whole number`,
		"otp_app: x\nheartbeat: soon\n":      `line 2: heartbeat: "soon" is not allowed: want a duration such as 500ms`,
		"sentry: [a@h, nohost]\n":            `line 1: sentry: entry 2, "nohost" is not allowed: want name@host`,
		"sentry:\n  - a@h\n  - a@h\n":        `line 3: sentry: entry 2, "a@h" is not allowed: listed twice`,
		"sentry: [\"a b@h\"]\n":              `sentry: entry 1, "a b@h" is not allowed`,
		"node:\n  name: bad\n":               "line 2: node.name: invalid node name",
		"engine: md5\n":                      `line 1: engine: "md5" is not allowed: want consistent, libring or libring-otp26`,
		"node:\n  epmd_port: notanumber":     `line 2: node.epmd_port: "notanumber" is not allowed: want a port number from 0 to 65535`,
		"node:\n  epmd_port: 70000":          `line 2: node.epmd_port: "70000" is not allowed: want a port number`,
		"flap_grce: 1s\n":                    "line 1: flap_grce: unknown key (did you mean flap_grace?)",
		"consensuss: 3\n":                    "unknown key (did you mean consensus?)",
		"colour: blue\n":                     "unknown key (known keys: otp_app, sentry,",
		"node:\n  colour: blue\n":            "line 2: node.colour: unknown key (known keys: name, cookie",
		"remove_after: 1s\nflap_grace: 2s\n": "line 2: flap_grace: 2s is not allowed: must be shorter than remove_after (1s)",
		"heartbeat: 1s\nsuspect_after: 1s\n": "line 1: heartbeat: 1s is not allowed: must be shorter than suspect_after (1s)",
		"consensus: 1\nconsensus: 2\n":       "line 2: consensus: given twice (first on line 1)",
		"sentry: a@h\n":                      "line 1: sentry: want a list",
		"- a\n- b\n":                         "line 1: want keys and values",
		"":                                   "the file is empty",
		"# only a comment\n":                 "the file is empty",
		"consensus: [1\n":                    "not valid YAML",
		"start_log_every: -1s\n":             `"-1s" is not allowed: want a duration ≥ 0`,
	} {
		p := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(p)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: want error containing %q, got %v", body, want, err)
			continue
		}
		if !strings.HasPrefix(err.Error(), "cloister: config: "+p+": ") {
			t.Errorf("%q: error does not start with the prefix and the file: %v", body, err)
		}
		if goTypeNames.MatchString(err.Error()) {
			t.Errorf("%q: error shows Go or YAML internals: %v", body, err)
		}
		if strings.HasPrefix(body, "consensus: 0") && !errors.Is(err, errs.ErrInvalidOption) {
			t.Errorf("not an ErrInvalidOption: %v", err)
		}
	}
}

// The keys issue 12 found missing, and the default ring following otp_app.
func TestFlapGraceStartLogEveryAndRing(t *testing.T) {
	f, err := Parse(strings.NewReader("otp_app: shop\nflap_grace: off\nstart_log_every: 5s\n"))
	if err != nil {
		t.Fatal(err)
	}
	o := f.Options()
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if o.FlapGrace != actors.NoFlapGrace || o.StartLogEvery != 5*time.Second || o.Ring != "shop" {
		t.Fatalf("flap_grace %s start_log_every %s ring %q", o.FlapGrace, o.StartLogEvery, o.Ring)
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
		_ = c.Validate() // must not panic
	})
}

func TestEngineByName(t *testing.T) {
	names := map[string]bool{}
	for _, n := range engineNames {
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

func TestEnvironment(t *testing.T) {
	env := map[string]string{"CLOISTER_CONSENSUS": "3", "CLOISTER_SENTRY": "a@h,b@h", "CLOISTER_FLAP_GRACE": "off"}
	o := actors.DefaultOptions()
	if err := ApplyEnv(&o, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if o.Consensus != 3 || !slices.Equal(o.Sentry, []string{"a@h", "b@h"}) || o.FlapGrace != actors.NoFlapGrace {
		t.Fatalf("%d %v %s", o.Consensus, o.Sentry, o.FlapGrace)
	}
	env["CLOISTER_CONSENSUS"] = "many"
	if err := ApplyEnv(&o, func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "$CLOISTER_CONSENSUS") {
		t.Fatalf("bad env: %v", err)
	}
}
