package cloister

import (
	"fmt"
	"math/big"
	"sort"
	"strconv"
	"strings"

	"github.com/ergo-services/ergo/etf"
)

// Key renders a term as the ring key every node computes identically for
// it: a string is itself, a binary its bytes, and any other term a
// canonical text (type-tagged, maps sorted by key). WhoisTerm and MineTerm
// use it on the default engine (the libring engine hashes terms itself);
// Whois and Mine take the string directly.
func Key(t etf.Term) string {
	switch v := t.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	var b strings.Builder
	writeKey(&b, t)
	return b.String()
}

func writeKey(b *strings.Builder, t etf.Term) {
	switch v := t.(type) {
	case nil:
		b.WriteString("[]")
	case etf.Atom:
		b.WriteString("a:")
		b.WriteString(strconv.Quote(string(v)))
	case string:
		b.WriteString("s:")
		b.WriteString(strconv.Quote(v))
	case []byte:
		b.WriteString("b:")
		b.WriteString(strconv.Quote(string(v)))
	case etf.String:
		b.WriteString("b:")
		b.WriteString(strconv.Quote(string(v)))
	case bool:
		fmt.Fprintf(b, "a:%q", strconv.FormatBool(v))
	case int:
		fmt.Fprintf(b, "i:%d", v)
	case int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		fmt.Fprintf(b, "i:%d", v)
	case *big.Int:
		fmt.Fprintf(b, "i:%s", v.String())
	case float32, float64:
		fmt.Fprintf(b, "f:%v", v)
	case etf.Tuple:
		writeSeq(b, "{", ",", "}", v)
	case etf.List:
		writeSeq(b, "[", ",", "]", v)
	case etf.ListImproper:
		writeSeq(b, "[", "|", "]", v)
	case etf.Map:
		keys := make([]string, 0, len(v))
		vals := map[string]etf.Term{}
		for k, val := range v {
			var kb strings.Builder
			writeKey(&kb, k)
			ks := kb.String()
			keys = append(keys, ks)
			vals[ks] = val
		}
		sort.Strings(keys)
		b.WriteString("#{")
		for i, k := range keys {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(k)
			b.WriteString("=>")
			writeKey(b, vals[k])
		}
		b.WriteString("}")
	case etf.Pid:
		fmt.Fprintf(b, "p:%s.%d.%d", v.Node, v.ID, v.Creation)
	case etf.Ref:
		fmt.Fprintf(b, "r:%s.%d.%v", v.Node, v.Creation, v.ID)
	default:
		fmt.Fprintf(b, "%T:%v", v, v)
	}
}

func writeSeq(b *strings.Builder, open, sep, close string, items []etf.Term) {
	b.WriteString(open)
	for i, e := range items {
		if i > 0 {
			b.WriteString(sep)
		}
		writeKey(b, e)
	}
	b.WriteString(close)
}
