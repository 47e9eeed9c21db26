package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/cloister-go/cloister/actors"
	"github.com/cloister-go/cloister/ring"
)

// field is one option settable from the file and the command line, found
// by reflection on the `yaml` and `help` tags of a struct (actors.Options or
// Node), so a new tagged field is settable everywhere at once.
type field struct {
	Key   string // the file's key: otp_app
	Flag  string // the flag: otp-app
	Name  string // the Go field: OTPApp
	Help  string
	index int
	typ   reflect.Type
}

var (
	durationType = reflect.TypeOf(time.Duration(0))
	engineType   = reflect.TypeOf((*ring.Engine)(nil)).Elem()
)

// fieldsOf lists the tagged fields of struct type t; a field tagged
// yaml:"-" is set from code only. A field without a yaml tag, or of a type
// the file cannot express, panics: a programming error a test catches.
func fieldsOf(t reflect.Type) []field {
	var fs []field
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		key, ok := sf.Tag.Lookup("yaml")
		if !ok {
			panic(fmt.Sprintf("config: %s.%s has no yaml tag (give it a key, or \"-\" if it is set from code only)", t.Name(), sf.Name))
		}
		if key == "-" {
			continue
		}
		if describe(sf.Type) == "" {
			panic(fmt.Sprintf("config: %s.%s: the file cannot express a %s", t.Name(), sf.Name, sf.Type))
		}
		fs = append(fs, field{Key: key, Flag: strings.ReplaceAll(key, "_", "-"), Name: sf.Name,
			Help: sf.Tag.Get("help"), index: i, typ: sf.Type})
	}
	return fs
}

var (
	optionFields = fieldsOf(reflect.TypeOf(actors.Options{}))
	nodeFields   = fieldsOf(reflect.TypeOf(Node{}))
)

// OptionKeys lists the file's keys of the cluster options, in the order of
// actors.Options.
func OptionKeys() []string {
	keys := make([]string, len(optionFields))
	for i, f := range optionFields {
		keys[i] = f.Key
	}
	return keys
}

// describe says what a value of type t may be, in words for a user ("" for
// a type the file cannot express).
func describe(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a duration such as 500ms, 3s or 1m"
	case t == engineType:
		return "consistent, libring or libring-otp26"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int:
		return "a whole number"
	case reflect.Uint16:
		return "a port number from 0 to 65535"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "a list of names"
		}
	}
	return ""
}

// parseScalar parses text as a value of type t. The error says what is
// allowed, without Go type names.
func parseScalar(t reflect.Type, name, text string) (reflect.Value, error) {
	bad := func() (reflect.Value, error) {
		return reflect.Value{}, fmt.Errorf("%q is not allowed: want %s", text, describe(t))
	}
	switch {
	case t == durationType:
		if name == "FlapGrace" && text == "off" {
			return reflect.ValueOf(actors.NoFlapGrace), nil
		}
		if text == "0" {
			return reflect.ValueOf(time.Duration(0)), nil
		}
		d, err := time.ParseDuration(text)
		if err != nil {
			return bad()
		}
		if d < 0 {
			return reflect.Value{}, fmt.Errorf("%q is not allowed: want a duration ≥ 0", text)
		}
		return reflect.ValueOf(d), nil
	case t == engineType:
		e := EngineByName(text)
		if e == nil || text == "" {
			return bad()
		}
		return reflect.ValueOf(&e).Elem(), nil
	}
	switch t.Kind() {
	case reflect.String:
		return reflect.ValueOf(text).Convert(t), nil
	case reflect.Bool:
		b, err := strconv.ParseBool(text)
		if err != nil {
			return bad()
		}
		return reflect.ValueOf(b), nil
	case reflect.Int:
		n, err := strconv.Atoi(text)
		if err != nil {
			return bad()
		}
		return reflect.ValueOf(n), nil
	case reflect.Uint16:
		n, err := strconv.ParseUint(text, 10, 16)
		if err != nil {
			return bad()
		}
		return reflect.ValueOf(uint16(n)), nil
	case reflect.Slice:
		var items []string
		for _, s := range strings.Split(text, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
		return reflect.ValueOf(items), nil
	}
	return bad()
}

// format renders a field's value as the file and the flags write it.
func format(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case time.Duration:
		if x == actors.NoFlapGrace {
			return "off"
		}
		return x.String()
	case ring.Engine:
		if x == nil {
			return "consistent"
		}
		for _, n := range engineNames {
			if EngineByName(n).Name() == x.Name() {
				return n
			}
		}
		return x.Name()
	case []string:
		return strings.Join(x, ",")
	}
	return fmt.Sprint(v.Interface())
}
