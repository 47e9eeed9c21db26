package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cloister-cli-")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "cloister")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		panic(fmt.Sprintf("build: %v\n%s", err, out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cli runs the binary and returns stdout, stderr and the exit code.
func cli(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func TestInitWritesAFileThatLoads(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cloister.yaml")
	if _, e, code := cli(t, "init", "-o", p); code != 0 {
		t.Fatalf("init: %d %s", code, e)
	}
	if out, e, code := cli(t, "node", "-config", p, "-check"); code != 0 || !strings.Contains(out, "configuration ok") {
		t.Fatalf("check: %d %q %q", code, out, e)
	}
	if _, e, code := cli(t, "init", "-o", p); code != 1 || !strings.Contains(e, "exists") {
		t.Fatalf("init over an existing file: %d %q", code, e)
	}
	if err := os.WriteFile(p, []byte("consensus: 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, e, code := cli(t, "node", "-config", p, "-check"); code != 1 || !strings.Contains(e, "line 1: consensus: 0 is not allowed") {
		t.Fatalf("bad config: %d %q", code, e)
	}
	if err := os.WriteFile(p, []byte("consensuss: 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, e, code := cli(t, "node", "-config", p, "-check"); code != 1 || !strings.Contains(e, "consensuss") {
		t.Fatalf("unknown key: %d %q", code, e)
	}
}

func TestBadUsageExitsTwo(t *testing.T) {
	for _, args := range [][]string{{}, {"nosuchcommand"}, {"node", "-nosuchflag"}, {"status"}, {"status", "not-a-node"}, {"status", "a@b", "c@d"},
		{"whois", "a@b"}, {"run", "-n", "0"}, {"test", "-n", "2"}, {"run", "-n", "2", "-consensus", "3"}} {
		if _, _, code := cli(t, args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}

func TestStatusOfUnreachableNodeFails(t *testing.T) {
	_, e, code := cli(t, "status", "-epmd-port", "1", "-timeout", "2s", "nobody@127.0.0.1")
	if code != 1 || e == "" {
		t.Fatalf("exit %d, stderr %q", code, e)
	}
}

func TestRunFormsAClusterThatStatusReports(t *testing.T) {
	cmd := exec.Command(bin, "run", "-n", "3", "-prefix", "clirun")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	env := map[string]string{}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	changes := 0
	deadline := time.After(60 * time.Second)
	for env["ERL_EPMD_PORT"] == "" || env["CLOISTER_COOKIE"] == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("run exited early")
			}
			if strings.Contains(l, "->") {
				changes++
			}
			if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok {
				env[k] = v
			}
		case <-deadline:
			t.Fatal("run did not report a ready cluster")
		}
	}
	if changes == 0 {
		t.Fatal("no state changes streamed")
	}
	out, e, code := cli(t, "status", "-json", "-epmd-port", env["ERL_EPMD_PORT"], "-cookie", env["CLOISTER_COOKIE"], "clirun_1@127.0.0.1")
	if code != 0 {
		t.Fatalf("status: %d %s", code, e)
	}
	var s struct {
		State   string
		Members []string
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil || s.State != "ready" || len(s.Members) != 3 {
		t.Fatalf("status %q: %v", out, err)
	}
	who, e, code := cli(t, "whois", "-epmd-port", env["ERL_EPMD_PORT"], "-cookie", env["CLOISTER_COOKIE"], "clirun_0@127.0.0.1", "user:42")
	if code != 0 || !strings.HasPrefix(who, "clirun_") {
		t.Fatalf("whois: %d %q %q", code, who, e)
	}
	if _, e, code := cli(t, "whois", "-epmd-port", env["ERL_EPMD_PORT"], "-cookie", env["CLOISTER_COOKIE"], "-group", "nope", "clirun_0@127.0.0.1", "k"); code != 1 || !strings.Contains(e, "no such ring") {
		t.Fatalf("whois unknown ring: %d %q", code, e)
	}
	// The CLI node never became a member.
	out, _, _ = cli(t, "status", "-json", "-epmd-port", env["ERL_EPMD_PORT"], "-cookie", env["CLOISTER_COOKIE"], "clirun_2@127.0.0.1")
	if strings.Contains(strings.SplitN(out, `"cluster"`, 2)[0], "cloister_cli") {
		t.Fatalf("CLI node became a member: %s", out)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for range lines {
		}
		done <- cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after Ctrl-C: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not stop on Ctrl-C")
	}
}

func TestTestRunsACommandThatSeesTheCluster(t *testing.T) {
	out, e, code := cli(t, "test", "-n", "3", "-prefix", "clitest", "--", "go", "test", "-count=1", "./testdata/seescluster")
	if code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("exit %d\n%s\n%s", code, out, e)
	}
	// The command's failure is ours.
	if _, _, code := cli(t, "test", "-n", "1", "-prefix", "clifail", "--", "sh", "-c", "exit 7"); code != 7 {
		t.Fatalf("exit %d, want the command's 7", code)
	}
}

// `cloister epmd` stands in for Erlang's epmd: a node registers with it and
// the CLI resolves the node through it.
func TestEPMDFallbackServesNodes(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	start := func(args ...string) *exec.Cmd {
		c := exec.Command(bin, args...)
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Process.Kill(); _, _ = c.Process.Wait() })
		return c
	}
	start("epmd", "-port", port)
	time.Sleep(300 * time.Millisecond)
	if _, e, code := cli(t, "epmd", "-port", port); code != 1 || !strings.Contains(e, "another epmd") {
		t.Fatalf("second epmd on the same port: %d %q", code, e)
	}
	start("node", "-name", "fallback@127.0.0.1", "-epmd-port", port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, e, code := cli(t, "status", "-json", "-epmd-port", port, "fallback@127.0.0.1")
		if code == 0 && strings.Contains(out, `"ready"`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("status through cloister epmd: %d %q %q", code, out, e)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// The product binary links no test harness and offers no test-only flags:
// tests run their own node program (cloistertest/internal/testnode).
func TestBinaryCarriesNoTestHooks(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "testing" || strings.Contains(dep, "cloistertest") || strings.HasSuffix(dep, "/testnode") {
			t.Errorf("cmd/cloister links %s", dep)
		}
	}
	help, _, code := cli(t, "node", "-h")
	if code != 0 {
		t.Fatalf("node -h: exit %d", code)
	}
	for _, f := range []string{"-void", "-panic-listener", "-plain", "-route", "-record-dns"} {
		if strings.Contains(help, "  "+f+" ") || strings.Contains(help, "  "+f+"\n") {
			t.Errorf("node -h lists the test-only flag %s", f)
		}
		if _, e, code := cli(t, "node", f); code != 2 || !strings.Contains(e, "not defined") {
			t.Errorf("node %s: exit %d, stderr %q; want a usage error", f, code, e)
		}
	}
}
