// Package seescluster is a user's test run by `cloister test`: it finds the
// cluster through the environment and checks every node is ready.
package seescluster

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
)

func TestSeesTheCluster(t *testing.T) {
	nodes := strings.Split(os.Getenv("CLOISTER_CLUSTER_NODES"), ",")
	addrs := strings.Split(os.Getenv("CLOISTER_CLUSTER_HTTP"), ",")
	if len(nodes) != 3 || len(addrs) != 3 || os.Getenv("ERL_EPMD_PORT") == "" {
		t.Fatalf("cluster not described: nodes %q http %q", nodes, addrs)
	}
	for _, a := range addrs {
		r, err := http.Get("http://" + a + "/status")
		if err != nil {
			t.Fatal(err)
		}
		var s struct {
			State   string
			Members []string
		}
		err = json.NewDecoder(r.Body).Decode(&s)
		r.Body.Close()
		if err != nil || s.State != "ready" || len(s.Members) != 3 {
			t.Fatalf("%s: %v state %q members %v", a, err, s.State, s.Members)
		}
	}
}
