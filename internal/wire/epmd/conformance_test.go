package epmd

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cloister-go/cloister/internal/testenv"
)

// The same conversation with Erlang's epmd and with ours gives the same
// replies (NAMES lines compared as sets, creations ignored).
func TestAnswersAsErlangsEPMD(t *testing.T) {
	real, err := testenv.StartEPMD()
	if err != nil {
		t.Skipf("Erlang's epmd is not installed: %v", err)
	}
	defer real.Stop()
	ours := startServer(t, &Server{})
	a, b := conversation(t, real.Port), conversation(t, ours)
	t.Logf("epmd:\n%s", strings.Join(a, "\n"))
	if len(a) != len(b) {
		t.Fatalf("%d replies from epmd, %d from ours", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Errorf("step %d: epmd %q, ours %q", i, a[i], b[i])
		}
	}
}

func conversation(t *testing.T, port uint16) []string {
	var out []string
	add := func(what string, reply []byte, open bool) {
		out = append(out, what+": "+describe(reply, port)+" open="+map[bool]string{true: "yes", false: "no"}[open])
	}
	c6, r := registerOn(t, port, alive("conf6", []byte{0x11, 0x3b, 1, 0}))
	add("register v6", r, true)
	_, r = registerOn(t, port, Alive2Req{Port: 15001, NodeType: nodeTypeHidden, High: 5, Low: 5, Name: "conf5"})
	add("register v5", r, true)
	_, r = registerOn(t, port, alive("conf6", nil))
	add("register a live name", r, true)
	for _, q := range []struct {
		what string
		req  []byte
	}{
		{"port please known", appendRequest(nil, []byte("zconf6"))},
		{"port please hidden", appendRequest(nil, []byte("zconf5"))},
		{"port please unknown", appendRequest(nil, []byte("znobody"))},
		{"names", appendRequest(nil, []byte("n"))},
		{"kill with live names", appendRequest(nil, []byte("k"))},
		{"stop", appendRequest(nil, []byte("sconf6"))},
		{"unknown code", appendRequest(nil, []byte("q"))},
		{"killer packet", killer},
		{"empty name", mustEncodeRaw(alive("", nil))},
	} {
		reply, open := send(t, dial(t, port), q.req)
		add(q.what, reply, open)
	}
	// A second request on a registered socket closes it and frees the name.
	reply, open := send(t, c6, mustEncode(t, alive("conf6b", nil)))
	add("second ALIVE2 on a socket", reply, open)
	// Asked until the name is gone: a server that never frees it answers
	// "found" to the last ask, which the comparison with epmd then shows.
	testenv.Poll(5*time.Second, func() bool {
		reply, open = send(t, dial(t, port), appendRequest(nil, []byte("zconf6")))
		return len(reply) == 2 && reply[0] == codePort2Resp && reply[1] != 0
	})
	add("port please after", reply, open)
	return out
}

// describe renders a reply with what differs by design masked: the
// creation in ALIVE2 replies, the port and line order in NAMES.
func describe(b []byte, port uint16) string {
	switch {
	case len(b) == 6 && b[0] == codeAlive2XResp && b[1] == 0:
		return "v ok <creation>"
	case len(b) == 4 && b[0] == codeAlive2Resp && b[1] == 0:
		return "y ok <creation>"
	case len(b) >= 2 && (b[0] == codeAlive2XResp || b[0] == codeAlive2Resp):
		return string(b[:1]) + " refused"
	case len(b) >= 4 && binary.BigEndian.Uint32(b[:4]) == uint32(port):
		lines := strings.Split(strings.TrimSuffix(string(b[4:]), "\n"), "\n")
		sort.Strings(lines)
		return "<port> " + strings.Join(lines, "|")
	}
	return fmt.Sprintf("%q", b)
}

// mustEncodeRaw encodes without the encoder's name check.
func mustEncodeRaw(a Alive2Req) []byte {
	b := []byte{codeAlive2Req}
	b = binary.BigEndian.AppendUint16(b, a.Port)
	b = append(b, a.NodeType, a.Protocol)
	b = binary.BigEndian.AppendUint16(b, a.High)
	b = binary.BigEndian.AppendUint16(b, a.Low)
	b = binary.BigEndian.AppendUint16(b, uint16(len(a.Name)))
	b = append(b, a.Name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(a.Extra)))
	b = append(b, a.Extra...)
	return appendRequest(nil, b)
}
