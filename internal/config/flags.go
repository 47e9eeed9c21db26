package config

import (
	"flag"
	"fmt"
	"reflect"
	"strings"

	"github.com/cloister-go/cloister/actors"
)

// Flags are the command-line flags of every cluster option, one per key of
// the file (otp_app is -otp-app), registered by BindFlags.
type Flags struct {
	fs  *flag.FlagSet
	set actors.Options // what the flags parsed into
}

// BindFlags registers a flag for every cluster option on fs. Its default
// is the option's default; a list takes comma-separated names; a duration
// Go's syntax (500ms); flap-grace also "off".
func BindFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{fs: fs, set: actors.DefaultOptions()}
	v := reflect.ValueOf(&f.set).Elem()
	for _, fl := range optionFields {
		fv := &flagValue{v: v.Field(fl.index), fl: fl}
		fs.Var(fv, fl.Flag, fl.Help+placeholder(fl.typ))
	}
	return f
}

// Apply copies into dst every option whose flag was given on the command
// line (after fs.Parse), so flags override the file or the defaults.
func (f *Flags) Apply(dst *actors.Options) {
	src := reflect.ValueOf(&f.set).Elem()
	d := reflect.ValueOf(dst).Elem()
	byFlag := map[string]field{}
	for _, fl := range optionFields {
		byFlag[fl.Flag] = fl
	}
	f.fs.Visit(func(x *flag.Flag) {
		if fl, ok := byFlag[x.Name]; ok {
			d.Field(fl.index).Set(src.Field(fl.index))
		}
	})
}

// placeholder ends a flag's help with what it takes; the word in
// backquotes is what the flag package shows after the flag's name.
func placeholder(t reflect.Type) string {
	switch {
	case t == durationType:
		return " (a `duration` such as 500ms, 3s or 1m)"
	case t == engineType:
		return " (an `engine` name)"
	}
	switch t.Kind() {
	case reflect.Int:
		return " (a whole `number`)"
	case reflect.Slice:
		return " (comma-separated `names`)"
	case reflect.String:
		return " (a `string`)"
	}
	return ""
}

type flagValue struct {
	v  reflect.Value
	fl field
}

// String is the value as the file writes it ("" for the zero value).
func (f *flagValue) String() string {
	if f == nil || !f.v.IsValid() || f.v.IsZero() {
		return "" // flag's help shows no default for it
	}
	return format(f.v)
}

// Set parses s as the file would.
func (f *flagValue) Set(s string) error {
	val, err := parseScalar(f.fl.typ, f.fl.Name, s)
	if err != nil {
		return err
	}
	f.v.Set(val)
	return nil
}

// IsBoolFlag lets a boolean flag stand alone (-loopback).
func (f *flagValue) IsBoolFlag() bool { return f.fl.typ.Kind() == reflect.Bool }

// EnvPrefix starts the environment variable of every option: CLOISTER_
// and the key in capitals (CLOISTER_OTP_APP, CLOISTER_CONSENSUS).
const EnvPrefix = "CLOISTER_"

// ApplyEnv sets in dst every option whose environment variable getenv
// returns non-empty (lists comma-separated); the error names the variable
// and what is allowed.
func ApplyEnv(dst *actors.Options, getenv func(string) string) error {
	d := reflect.ValueOf(dst).Elem()
	for _, fl := range optionFields {
		name := EnvPrefix + strings.ToUpper(fl.Key)
		s := getenv(name)
		if s == "" {
			continue
		}
		val, err := parseScalar(fl.typ, fl.Name, s)
		if err != nil {
			return fmt.Errorf("cloister: $%s: %w", name, err)
		}
		d.Field(fl.index).Set(val)
	}
	return nil
}
