package cloister_test

import (
	"errors"
	"fmt"

	"github.com/cloister-go/cloister"
	"github.com/ergo-services/ergo/etf"
)

func ExampleCluster_WhoisN() {
	c := cloister.Default() // the cluster StartNode returned

	// Up to 3 distinct members for the key, owner first: with one node in
	// the cluster, that node alone.
	replicas, err := c.WhoisN("", "user:42", 3)
	fmt.Println(replicas, err)

	// A caller's buffer: no allocation on the lookup path.
	buf := make([]string, 0, 3)
	buf, err = c.AppendWhoisN(buf[:0], "sessions", "user:42", 3)
	fmt.Println(buf, err)

	replicas, err = c.WhoisTermN("", etf.Tuple{etf.Atom("user"), 42}, 2)
	fmt.Println(replicas, err)

	_, err = c.WhoisN("", "user:42", 0)
	fmt.Println(errors.Is(err, cloister.ErrBadCount))
	_, err = c.WhoisN("no_such_ring", "user:42", 2)
	fmt.Println(errors.Is(err, cloister.ErrNoSuchRing))
	// Output:
	// [example@127.0.0.1] <nil>
	// [example@127.0.0.1] <nil>
	// [example@127.0.0.1] <nil>
	// true
	// true
}
