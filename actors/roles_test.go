package actors

import (
	"errors"
	"github.com/cloister-go/cloister/internal/errs"
	"reflect"
	"strings"
	"testing"
	"time"
)

// A ring restricted to a role holds only the members announcing it, this
// node included or not by its own roles; the others route with it.
func TestDriverRoleRingHoldsOnlyTheRole(t *testing.T) {
	o := testOptions()
	o.Sentry = []string{"a@h", "b@h", "c@h", "d@h"}
	o.Groups = []string{"jobs"}
	o.RingRoles = []string{"jobs=worker"}
	o.Roles = []string{"api"}
	r := newRig(t, o, "b@h", "c@h", "d@h")
	r.net.roles["b@h"] = []string{"worker"}
	r.net.roles["c@h"] = []string{"api", "worker"}
	// d@h announces nothing, as a BEAM node.
	r.begin()
	r.until(time.Second)
	r.settle()
	jobs, _ := r.c.Rings.Get("jobs")
	all, _ := r.c.Rings.Get("cloister")
	if !reflect.DeepEqual(jobs.Members(), []string{"b@h", "c@h"}) || len(all.Members()) != 4 {
		t.Fatalf("jobs %v, cloister %v", jobs.Members(), all.Members())
	}
	owner, err := jobs.Owner("some key")
	if err != nil || owner != "b@h" && owner != "c@h" {
		t.Fatalf("owner %q %v", owner, err)
	}
	snap := r.c.Snapshot()
	want := map[string][]string{"a@h": {"api"}, "b@h": {"worker"}, "c@h": {"api", "worker"}}
	if !reflect.DeepEqual(snap.Roles, want) {
		t.Fatalf("snapshot roles %v, want %v", snap.Roles, want)
	}
	// A worker killed: the ring keeps the other worker only.
	r.net.set(r.net.up, "b@h", false)
	r.net.set(r.net.gone, "b@h", true)
	r.net.drop("b@h")
	r.until(3 * time.Second)
	r.settle()
	jobs, _ = r.c.Rings.Get("jobs")
	if !reflect.DeepEqual(jobs.Members(), []string{"c@h"}) {
		t.Fatalf("jobs after b@h left %v", jobs.Members())
	}
}

func TestRoleOptionsAreChecked(t *testing.T) {
	for _, c := range []struct {
		set  func(*Options)
		want string
	}{
		{func(o *Options) { o.Roles = []string{"bad role"} }, "Roles[0]"},
		{func(o *Options) { o.Roles = []string{"a", "a"} }, "listed twice"},
		{func(o *Options) { o.Roles = strings.Split("a b c d e f g h i j k l m n o p q", " ") }, "at most 16"},
		{func(o *Options) { o.Meta = []string{"novalue"} }, "want key=value"},
		{func(o *Options) { o.Meta = []string{"k=" + strings.Repeat("v", 257)} }, "at most 256 bytes"},
		{func(o *Options) { o.Meta = []string{"k=1", "k=2"} }, "set twice"},
		{func(o *Options) { o.RingRoles = []string{"jobs=worker"} }, "no ring jobs"},
		{func(o *Options) { o.Groups = []string{"jobs"}; o.RingRoles = []string{"jobs"} }, "want ring=role"},
		{func(o *Options) { o.Groups = []string{"jobs"}; o.RingRoles = []string{"jobs=a b"} }, "RingRoles[0]"},
	} {
		o := DefaultOptions()
		c.set(&o)
		err := o.Validate()
		if !errors.Is(err, errs.ErrInvalidOption) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want an error with %q, got %v", c.want, err)
		}
	}
	o := DefaultOptions()
	o.Roles, o.Meta = []string{"worker", "gpu"}, []string{"zone=eu-1", "version=1.2 beta"}
	o.Groups, o.RingRoles = []string{"jobs"}, []string{"jobs=worker", "cloister=gpu"}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
}
