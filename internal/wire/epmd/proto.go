// Package epmd is cloister's own EPMD: a server and a client for the Erlang
// Port Mapper protocol, written from the protocol description (Erlang's
// "Distribution Protocol" chapter) and checked against the behaviour of
// Erlang's epmd.
//
// Nothing that comes from the network reaches Ergo's EPMD code: Ergo's
// embedded server trusts the lengths in a packet (13 bytes crash the
// process that serves it), accepts registrations from anywhere and keeps
// names whose socket is gone; its client indexes replies it has not
// checked. Here every length is checked before use, reads are bounded and
// have deadlines, and the server keeps the real epmd's rules: registrations
// only from the local host, one name per socket, a name freed when the
// socket that registered it closes.
//
// Packets: a request is a 2-byte big-endian length followed by that many
// bytes, whose first is the request code. Replies are not length-prefixed.
package epmd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Request and reply codes.
const (
	codeAlive2Req     = 'x' // 120
	codeAlive2Resp    = 'y' // 121: reply for nodes whose highest version < 6
	codeAlive2XResp   = 'v' // 118: 32-bit creation, for highest version ≥ 6
	codePortPlease2   = 'z' // 122
	codePort2Resp     = 'w' // 119
	codeNamesReq      = 'n' // 110
	codeDumpReq       = 'd' // 100
	codeKillReq       = 'k' // 107
	codeStopReq       = 's' // 115
	nodeTypeNormal    = 77  // 'M'
	nodeTypeHidden    = 72  // 'H'
	protocolTCP       = 0   // the only protocol defined
	handshakeVersion5 = 5
	handshakeVersion6 = 6
)

// Limits. A node name is at most 255 characters of UTF-8 (BEAM's atom
// limit), so 1020 bytes. Extra data is opaque; Ergo puts 4 bytes there.
const (
	MaxNameLen  = 255 * 4
	MaxExtraLen = 512
	// MaxRequestLen bounds the length prefix of a request: an ALIVE2
	// request with the longest name and extra fits.
	MaxRequestLen = 1 + 2 + 1 + 1 + 2 + 2 + 2 + MaxNameLen + 2 + MaxExtraLen
)

// ErrMalformed is wrapped by every parse error.
var ErrMalformed = errors.New("epmd: malformed packet")

func malformed(format string, args ...interface{}) error {
	return fmt.Errorf("%w: "+format, append([]interface{}{ErrMalformed}, args...)...)
}

// Alive2Req is a node's registration: ALIVE2_REQ.
type Alive2Req struct {
	Port     uint16 // the node's distribution port
	NodeType byte   // 77 normal, 72 hidden
	Protocol byte   // 0: TCP/IP v4
	High     uint16 // highest distribution version
	Low      uint16 // lowest distribution version
	Name     string // the part before '@'
	Extra    []byte
}

// Request is one parsed request. Code says which fields are meaningful:
// Alive for 'x', Name (unchecked) for 'z' (PORT_PLEASE2) and 's' (STOP).
type Request struct {
	Code  byte
	Alive Alive2Req
	Name  string
}

// ParseRequest parses the body of a request (the bytes after the 2-byte
// length). It never panics and never keeps a reference to body.
func ParseRequest(body []byte) (Request, error) {
	if len(body) == 0 {
		return Request{}, malformed("empty request")
	}
	if len(body) > MaxRequestLen {
		return Request{}, malformed("request of %d bytes (limit %d)", len(body), MaxRequestLen)
	}
	r := Request{Code: body[0]}
	rest := body[1:]
	switch r.Code {
	case codeAlive2Req:
		a, err := parseAlive2(rest)
		if err != nil {
			return Request{}, err
		}
		r.Alive = a
	case codePortPlease2, codeStopReq:
		// Not checked: an odd name is simply not found. Ergo's client
		// indexes the reply without checking its length, so a lookup is
		// always answered rather than cut off.
		r.Name = string(rest)
	case codeNamesReq, codeDumpReq, codeKillReq:
		if len(rest) != 0 {
			return Request{}, malformed("%d unexpected bytes after request %q", len(rest), r.Code)
		}
	default:
		return Request{}, malformed("unknown request code %d", r.Code)
	}
	return r, nil
}

// parseAlive2 reads PortNo(2) NodeType(1) Protocol(1) High(2) Low(2)
// Nlen(2) Name(Nlen) Elen(2) Extra(Elen), and nothing after.
func parseAlive2(b []byte) (Alive2Req, error) {
	const fixed = 2 + 1 + 1 + 2 + 2 + 2
	if len(b) < fixed+2 {
		return Alive2Req{}, malformed("ALIVE2_REQ of %d bytes, at least %d needed", len(b)+1, fixed+3)
	}
	a := Alive2Req{
		Port:     binary.BigEndian.Uint16(b[0:2]),
		NodeType: b[2],
		Protocol: b[3],
		High:     binary.BigEndian.Uint16(b[4:6]),
		Low:      binary.BigEndian.Uint16(b[6:8]),
	}
	nlen := int(binary.BigEndian.Uint16(b[8:10]))
	b = b[fixed:]
	if nlen > len(b)-2 {
		return Alive2Req{}, malformed("ALIVE2_REQ name length %d, only %d bytes follow", nlen, len(b)-2)
	}
	name := b[:nlen]
	if err := checkName(name); err != nil {
		return Alive2Req{}, err
	}
	b = b[nlen:]
	elen := int(binary.BigEndian.Uint16(b[0:2]))
	b = b[2:]
	if elen != len(b) {
		return Alive2Req{}, malformed("ALIVE2_REQ extra length %d, %d bytes follow", elen, len(b))
	}
	if elen > MaxExtraLen {
		return Alive2Req{}, malformed("ALIVE2_REQ extra of %d bytes (limit %d)", elen, MaxExtraLen)
	}
	if a.NodeType != nodeTypeNormal && a.NodeType != nodeTypeHidden {
		return Alive2Req{}, malformed("ALIVE2_REQ node type %d (want 77 or 72)", a.NodeType)
	}
	if a.Protocol != protocolTCP {
		return Alive2Req{}, malformed("ALIVE2_REQ protocol %d (want 0)", a.Protocol)
	}
	if a.Low > a.High || a.High == 0 {
		return Alive2Req{}, malformed("ALIVE2_REQ versions %d..%d", a.Low, a.High)
	}
	a.Name = string(name)
	a.Extra = append([]byte(nil), b...)
	return a, nil
}

// checkName accepts what a node may be called before the '@': 1 to
// MaxNameLen bytes of UTF-8 with no control characters (a newline would
// forge lines in a NAMES reply) and no '@'.
func checkName(b []byte) error {
	if len(b) == 0 {
		return malformed("empty node name")
	}
	if len(b) > MaxNameLen {
		return malformed("node name of %d bytes (limit %d)", len(b), MaxNameLen)
	}
	if !utf8.Valid(b) {
		return malformed("node name is not UTF-8")
	}
	for _, c := range b {
		if c < 0x20 || c == 0x7f || c == '@' {
			return malformed("node name contains byte %#x", c)
		}
	}
	return nil
}

// appendRequest frames body with its 2-byte length.
func appendRequest(dst []byte, body ...[]byte) []byte {
	n := 0
	for _, b := range body {
		n += len(b)
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	for _, b := range body {
		dst = append(dst, b...)
	}
	return dst
}

// EncodeAlive2 returns the framed ALIVE2_REQ for a.
func EncodeAlive2(a Alive2Req) ([]byte, error) {
	if err := checkName([]byte(a.Name)); err != nil {
		return nil, err
	}
	if len(a.Extra) > MaxExtraLen {
		return nil, malformed("extra of %d bytes (limit %d)", len(a.Extra), MaxExtraLen)
	}
	b := []byte{codeAlive2Req}
	b = binary.BigEndian.AppendUint16(b, a.Port)
	b = append(b, a.NodeType, a.Protocol)
	b = binary.BigEndian.AppendUint16(b, a.High)
	b = binary.BigEndian.AppendUint16(b, a.Low)
	b = binary.BigEndian.AppendUint16(b, uint16(len(a.Name)))
	b = append(b, a.Name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(a.Extra)))
	b = append(b, a.Extra...)
	return appendRequest(nil, b), nil
}

// encodeAliveResp is the reply to ALIVE2_REQ: the X form (32-bit
// creation) for nodes speaking version 6, the old one (16-bit) otherwise,
// as Erlang's epmd does. result 0 is success.
func encodeAliveResp(high uint16, result byte, creation uint32) []byte {
	if high >= handshakeVersion6 {
		return binary.BigEndian.AppendUint32([]byte{codeAlive2XResp, result}, creation)
	}
	return binary.BigEndian.AppendUint16([]byte{codeAlive2Resp, result}, uint16(creation))
}

// encodePort2Resp is a found PORT2_RESP.
func encodePort2Resp(a Alive2Req) []byte {
	b := []byte{codePort2Resp, 0}
	b = binary.BigEndian.AppendUint16(b, a.Port)
	b = append(b, a.NodeType, a.Protocol)
	b = binary.BigEndian.AppendUint16(b, a.High)
	b = binary.BigEndian.AppendUint16(b, a.Low)
	b = binary.BigEndian.AppendUint16(b, uint16(len(a.Name)))
	b = append(b, a.Name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(a.Extra)))
	return append(b, a.Extra...)
}

// ParsePort2Resp parses a complete PORT2_RESP. found is false for a
// "not found" reply (result ≠ 0).
func ParsePort2Resp(b []byte) (a Alive2Req, found bool, err error) {
	if len(b) < 2 {
		return Alive2Req{}, false, malformed("PORT2_RESP of %d bytes", len(b))
	}
	if b[0] != codePort2Resp {
		return Alive2Req{}, false, malformed("PORT2_RESP code %d (want %d)", b[0], codePort2Resp)
	}
	if b[1] != 0 {
		return Alive2Req{}, false, nil
	}
	// The rest has the layout of an ALIVE2_REQ body.
	a, err = parseAlive2(b[2:])
	if err != nil {
		return Alive2Req{}, false, err
	}
	return a, true, nil
}

// port2RespLen says how many bytes of a PORT2_RESP are complete in b:
// need > 0 asks for that many bytes in total; done when b holds it all.
func port2RespLen(b []byte) (need int, done bool) {
	if len(b) < 2 {
		return 2, false
	}
	if b[0] != codePort2Resp || b[1] != 0 {
		return 2, true
	}
	const head = 2 + 10
	if len(b) < head+2 {
		return head + 2, false
	}
	nlen := int(binary.BigEndian.Uint16(b[head-2 : head]))
	if len(b) < head+nlen+2 {
		return head + nlen + 2, false
	}
	elen := int(binary.BigEndian.Uint16(b[head+nlen : head+nlen+2]))
	total := head + nlen + 2 + elen
	return total, len(b) >= total
}
