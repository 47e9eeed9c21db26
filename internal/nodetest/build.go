// Package nodetest is what the module's own tests need of the test node
// program (cloistertest/internal/testnode) beyond package cloistertest:
// the program and the cloister CLI, built once per test binary; the
// client of the node's /debug endpoints; and the original suite's Void
// server, which the node runs with -void and in-process tests start
// themselves.
package nodetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

var (
	buildOnce sync.Once
	buildBin  string
	buildErr  error
)

// Binary returns the node program: $CLOISTER_BIN, or the test node built
// once per process from
// github.com/cloister-go/cloister/cloistertest/internal/testnode.
func Binary() (string, error) {
	if b := os.Getenv("CLOISTER_BIN"); b != "" {
		return b, nil
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cloistertest-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildBin = filepath.Join(dir, "testnode")
		cmd := exec.Command("go", "build", "-o", buildBin, "github.com/cloister-go/cloister/cloistertest/internal/testnode")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("cloistertest: build the test node: %v\n%s", err, out)
		}
	})
	return buildBin, buildErr
}

var (
	cliOnce sync.Once
	cliBin  string
	cliErr  error
)

// CLI returns the `cloister` command (cmd/cloister), built once per
// process, for tests of what a user runs (status, whois, run); node
// processes run the test node (Binary).
func CLI() (string, error) {
	cliOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cloistertest-cli-")
		if err != nil {
			cliErr = err
			return
		}
		cliBin = filepath.Join(dir, "cloister")
		out, err := exec.Command("go", "build", "-o", cliBin, "github.com/cloister-go/cloister/cmd/cloister").CombinedOutput()
		if err != nil {
			cliErr = fmt.Errorf("cloistertest: build cloister: %v\n%s", err, out)
		}
	})
	return cliBin, cliErr
}
