package actors

import (
	"reflect"
	"slices"
	"testing"

	"github.com/cloister-go/cloister/listener"
	"github.com/cloister-go/cloister/ring"
	"github.com/ergo-services/ergo/etf"
)

// {whois_n, Group, Key, N} answers what WhoisN answers, and badarg for a
// count that is not a positive integer or a group or key that is not text.
func TestWhoisNAnswer(t *testing.T) {
	c, err := newShared("app", []string{"app", "jobs"}, ring.Consistent())
	if err != nil {
		t.Fatal(err)
	}
	members := []string{"a@h", "b@h", "c@h"}
	for _, r := range []string{"app", "jobs"} {
		if _, _, err := c.Rings.Update(r, members); err != nil {
			t.Fatal(err)
		}
	}
	m := newMonitor(c, Options{})
	for _, group := range []etf.Term{[]byte(""), etf.Atom("default"), "app", []byte("jobs")} {
		for _, n := range []int{1, 2, 3, 7} {
			var count etf.Term = n
			if n == 2 {
				count = int64(n) // as Ergo decodes a larger integer
			}
			got := m.whoisN(group, []byte("key:1"), count)
			ring := "app"
			if g, _ := termString(group); g == "jobs" {
				ring = "jobs"
			}
			want, err := c.Rings.AppendOwners(nil, ring, "key:1", n)
			if err != nil {
				t.Fatal(err)
			}
			tup, ok := got.(etf.Tuple)
			if !ok || len(tup) != 2 || tup[0] != etf.Atom("ok") {
				t.Fatalf("whois_n %v %v: %v", group, n, got)
			}
			var names []string
			for _, a := range tup[1].(etf.List) {
				names = append(names, string(a.(etf.Atom)))
			}
			if !slices.Equal(names, want) {
				t.Fatalf("whois_n %v %v: %v, WhoisN %v", group, n, names, want)
			}
		}
	}
	for _, bad := range [][3]etf.Term{{[]byte(""), []byte("k"), 0}, {[]byte(""), []byte("k"), -1}, {[]byte(""), []byte("k"), etf.Atom("x")},
		{1, []byte("k"), 1}, {[]byte(""), etf.Tuple{}, 1}} {
		if got := m.whoisN(bad[0], bad[1], bad[2]); !reflect.DeepEqual(got, etf.Tuple{etf.Atom("error"), etf.Atom("badarg")}) {
			t.Errorf("whois_n %v: %v, want {error, badarg}", bad, got)
		}
	}
	if got, ok := m.whoisN([]byte("nope"), []byte("k"), 1).(etf.Tuple); !ok || got[0] != etf.Atom("error") {
		t.Errorf("whois_n of an unknown ring: %v", got)
	}
}

// A state answer for a caller outside the ring lists every member's roles
// and metadata; members without any are left out.
func TestAddMemberRoles(t *testing.T) {
	st := etf.Map{}
	addMemberRoles(st, listener.Snapshot{
		Members: []string{"a@h", "b@h", "c@h"},
		Roles:   map[string][]string{"a@h": {"api", "web"}, "c@h": {"worker"}},
		Meta:    map[string]map[string]string{"c@h": {"zone": "eu", "index": "2"}},
	})
	b := func(s string) []byte { return []byte(s) }
	want := etf.Map{
		etf.Atom("member_roles"): etf.List{
			etf.Tuple{etf.Atom("a@h"), etf.List{b("api"), b("web")}},
			etf.Tuple{etf.Atom("c@h"), etf.List{b("worker")}},
		},
		etf.Atom("member_meta"): etf.List{
			etf.Tuple{etf.Atom("c@h"), etf.List{etf.Tuple{b("index"), b("2")}, etf.Tuple{b("zone"), b("eu")}}},
		},
	}
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("got  %v\nwant %v", st, want)
	}
}
