package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloister-go/cloister/internal/testenv"
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

// freePort is a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	p, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(int(p))
}

// cliEnv is cli with extra environment variables.
func cliEnv(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), errb.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), 0
}

// `cloister run` and `cloister status` share their defaults: status
// reaches a run cluster with no -cookie and no -epmd-port. The test gives
// both the same $ERL_EPMD_PORT (4369 is the machine's, not the test's);
// the cookie is the default on both sides. Run starts the epmd itself.
func TestRunFormsAClusterThatStatusReports(t *testing.T) {
	env := []string{"ERL_EPMD_PORT=" + freePort(t), "CLOISTER_COOKIE="}
	p := startProc(t, env, "run", "-n", "3", "-prefix", "clirun")
	head := p.waitLine(t, 30*time.Second, "the banner", func(l string) bool { return strings.HasPrefix(l, "cloister run: 3 nodes") })
	port := strings.TrimPrefix(env[0], "ERL_EPMD_PORT=")
	if !strings.Contains(head, "epmd port "+port) || !strings.Contains(head, "cookie cloister") {
		t.Fatalf("banner %q: want epmd port %s and cookie cloister", head, port)
	}
	p.waitLine(t, 60*time.Second, "the ready line", func(l string) bool { return strings.Contains(l, "3 nodes ready") })
	changes := 0
	for _, l := range p.all {
		if strings.Contains(l, "->") {
			changes++
			// Each change carries the time the node saw it.
			if _, err := time.Parse("15:04:05.000", strings.Fields(l)[0]); err != nil {
				t.Errorf("change without a timestamp: %q", l)
			}
		}
	}
	if changes == 0 {
		t.Fatal("no state changes streamed")
	}
	// No cookie, no epmd port: the shared defaults. Flags after the node.
	out, e, code := cliEnv(t, env, "status", "clirun_1@127.0.0.1", "-json")
	if code != 0 {
		t.Fatalf("status: %d %s", code, e)
	}
	var s struct {
		State   string
		Members []string
		Cluster []string
		Hash    interface{}
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil || s.State != "ready" || len(s.Members) != 3 {
		t.Fatalf("status %q: %v", out, err)
	}
	// The CLI's own node is not part of the cluster it reports.
	if len(s.Cluster) != 3 || strings.Contains(out, "cloister_cli") {
		t.Fatalf("cluster is not the 3 nodes: %s", out)
	}
	// One ring hash format: the hex string /status has too.
	if h, ok := s.Hash.(string); !ok || len(h) != 16 {
		t.Fatalf("hash %v: want 16 hex digits in a string", s.Hash)
	}
	text, _, code := cliEnv(t, env, "status", "clirun_2@127.0.0.1")
	if code != 0 || strings.Contains(text, "cloister_cli") || !strings.Contains(text, "cluster:   3 [") {
		t.Fatalf("status text: %d %q", code, text)
	}
	who, e, code := cliEnv(t, env, "whois", "clirun_0@127.0.0.1", "user:42")
	if code != 0 || !strings.HasPrefix(who, "clirun_") {
		t.Fatalf("whois: %d %q %q", code, who, e)
	}
	if _, e, code := cliEnv(t, env, "whois", "clirun_0@127.0.0.1", "k", "-group", "nope"); code != 1 || !strings.Contains(e, "no such ring") {
		t.Fatalf("whois unknown ring: %d %q", code, e)
	}
	// A wrong cookie says which one it tried and how to set it.
	if _, e, code := cliEnv(t, env, "status", "-timeout", "3s", "-cookie", "wrong", "clirun_0@127.0.0.1"); code != 1 || !strings.Contains(e, `"wrong"`) || !strings.Contains(e, "CLOISTER_COOKIE") {
		t.Fatalf("wrong cookie: %d %q", code, e)
	}
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("run after Ctrl-C: exit %d\n%s", code, p.errb)
	}
}

// `run -- prog` says where its cluster is, and when a node exits, which
// one, how, and its last lines.
func TestRunProgramNamesTheNodeThatExited(t *testing.T) {
	env := []string{"ERL_EPMD_PORT=" + freePort(t)}
	script := `echo "up as $CLOISTER_NODE cookie $CLOISTER_COOKIE epmd $ERL_EPMD_PORT"
if [ "$CLOISTER_NODE" = clirp_1@127.0.0.1 ]; then sleep 0.5; echo "clirp_1: cannot open the database" >&2; exit 3; fi
exec sleep 60`
	p := startProc(t, env, "run", "-n", "2", "-prefix", "clirp", "--", "sh", "-c", script)
	code := p.wait(t, 60*time.Second)
	out, errs := strings.Join(p.all, "\n"), p.errb.String()
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", code, out, errs)
	}
	port := strings.TrimPrefix(env[0], "ERL_EPMD_PORT=")
	for _, want := range []string{"epmd port " + port, "cookie cloister", "clirp_0@127.0.0.1 clirp_1@127.0.0.1",
		"[clirp_0@127.0.0.1] up as clirp_0@127.0.0.1 cookie cloister epmd " + port} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errs, "node clirp_1@127.0.0.1 exited (exit status 3)") {
		t.Errorf("stderr does not name the node and its status:\n%s", errs)
	}
	i := strings.Index(errs, "last lines of clirp_1@127.0.0.1")
	if i < 0 || !strings.Contains(errs[i:], "cannot open the database") {
		t.Errorf("the failing node's last lines are not repeated:\n%s", errs)
	}
}

func TestTestRunsACommandThatSeesTheCluster(t *testing.T) {
	env := []string{"ERL_EPMD_PORT=" + freePort(t)}
	out, e, code := cliEnv(t, env, "test", "-n", "3", "-prefix", "clitest", "--", "go", "test", "-count=1", "./testdata/seescluster")
	if code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("exit %d\n%s\n%s", code, out, e)
	}
	// The command's failure is ours.
	if _, _, code := cliEnv(t, env, "test", "-n", "1", "-prefix", "clifail", "--", "sh", "-c", "exit 7"); code != 7 {
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
	testenv.WaitFor(t, 20*time.Second, "cloister epmd accepting on "+port, func() bool {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if _, e, code := cli(t, "epmd", "-port", port); code != 1 || !strings.Contains(e, "another epmd") {
		t.Fatalf("second epmd on the same port: %d %q", code, e)
	}
	start("node", "-name", "fallback@127.0.0.1", "-epmd-port", port)
	var out, e string
	var code int
	if !testenv.PollInterval(20*time.Second, 200*time.Millisecond, func() bool { // a CLI process per check
		out, e, code = cli(t, "status", "-json", "-epmd-port", port, "fallback@127.0.0.1")
		return code == 0 && strings.Contains(out, `"ready"`)
	}) {
		t.Fatalf("status through cloister epmd: %d %q %q", code, out, e)
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

// proc is the binary running in the background, its stdout lines streamed.
type proc struct {
	cmd   *exec.Cmd
	lines chan string
	all   []string
	errb  *testenv.Buffer
	done  chan struct{}
	err   error
}

func startProc(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), lines: make(chan string, 1000), errb: &testenv.Buffer{}, done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p.cmd.Stderr = p.errb
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p
}

// waitLine reads lines until one satisfies ok.
func (p *proc) waitLine(t *testing.T, timeout time.Duration, what string, ok func(string) bool) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, open := <-p.lines:
			if !open {
				t.Fatalf("exited before %s; stdout:\n%s\nstderr:\n%s", what, strings.Join(p.all, "\n"), p.errb)
			}
			p.all = append(p.all, l)
			if ok(l) {
				return l
			}
		case <-deadline:
			t.Fatalf("no %s within %s; stdout:\n%s\nstderr:\n%s", what, timeout, strings.Join(p.all, "\n"), p.errb)
		}
	}
}

// wait drains stdout and waits for the exit; it returns the exit code.
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, open := <-p.lines:
			if open {
				p.all = append(p.all, l)
				continue
			}
			select {
			case <-p.done:
			case <-deadline:
				t.Fatalf("did not exit within %s", timeout)
			}
			var ee *exec.ExitError
			if errors.As(p.err, &ee) {
				return ee.ExitCode()
			}
			if p.err != nil {
				t.Fatal(p.err)
			}
			return 0
		case <-deadline:
			t.Fatalf("did not exit within %s; stdout:\n%s\nstderr:\n%s", timeout, strings.Join(p.all, "\n"), p.errb)
		}
	}
}

// privateEPMD starts an epmd on a free port for one test.
func privateEPMD(t *testing.T) string {
	t.Helper()
	e, err := testenv.StartEPMD()
	if err != nil {
		if e, err = testenv.StartEPMDWith(bin, "epmd"); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(e.Stop)
	return strconv.Itoa(int(e.Port))
}

// A node waiting in the start gate (its consensus cannot be met) stops on
// SIGINT and on SIGTERM at once, in order: the Monitor runs stopping →
// stopped and the listener hears it before the process ends.
func TestNodeStopsInTheStartGate(t *testing.T) {
	port := privateEPMD(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			name := "gate_" + strconv.Itoa(int(sig)) + "@127.0.0.1"
			p := startProc(t, nil, "node", "-name", name, "-epmd-port", port, "-consensus", "3", "-events",
				"-sentry", name+",gate_a@127.0.0.1,gate_b@127.0.0.1")
			// In the gate: a state event, and the gate's first "waiting" line.
			p.waitLine(t, 30*time.Second, "a state change", func(l string) bool { return strings.Contains(l, `"event":"state"`) })
			if !testenv.Poll(30*time.Second, func() bool { return strings.Contains(p.errb.String(), "waiting for consensus") }) {
				t.Fatalf("no 'waiting for consensus' line:\n%s", p.errb)
			}
			sent := time.Now()
			if err := p.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			// Generous for a loaded machine; the issue was 4-16 s or never.
			code := p.wait(t, 10*time.Second)
			took := time.Since(sent)
			t.Logf("%s: exit %d after %s", sig, code, took.Round(time.Millisecond))
			if code != 0 {
				t.Errorf("exit %d, want 0; stderr:\n%s", code, p.errb)
			}
			var order []string
			for _, l := range p.all {
				var e struct{ Event, From, To, During string }
				if json.Unmarshal([]byte(l), &e) == nil {
					if e.Event == "state" {
						order = append(order, e.To)
					} else if e.Event == "stopped" {
						order = append(order, "exit:"+e.During)
					}
				}
			}
			got := strings.Join(order, " ")
			if !strings.HasSuffix(got, "stopping stopped exit:start") {
				t.Errorf("not stopped in order: %s", got)
			}
			if strings.Contains(got, "ready") {
				t.Errorf("became ready without its consensus: %s", got)
			}
		})
	}
}

// Help goes to stdout with exit 0 (so `| less` shows it), for every
// command; a flag's default is said once.
func TestHelpGoesToStdout(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"init", "--help"}, {"run", "--help"}, {"test", "-h"},
		{"demo", "--help"}, {"node", "--help"}, {"status", "--help"}, {"whois", "-help"}, {"epmd", "--help"}} {
		out, e, code := cli(t, args...)
		if code != 0 || e != "" || !strings.Contains(out, "usage") {
			t.Errorf("%q: exit %d, stderr %q, stdout %q", args, code, e, out)
		}
	}
	for _, cmd := range []string{"node", "status", "whois", "run", "test", "demo"} {
		out, _, _ := cli(t, cmd, "-h")
		i := strings.Index(out, "  -epmd-port")
		if i < 0 {
			t.Errorf("%s -h has no -epmd-port:\n%s", cmd, out)
			continue
		}
		block := out[i+2:]
		if j := strings.Index(block, "\n  -"); j >= 0 {
			block = block[:j]
		}
		if n := strings.Count(block, "default"); n != 1 {
			t.Errorf("%s -h: -epmd-port says default %d times: %q", cmd, n, block)
		}
	}
	// A bad flag still says why, on stderr, with exit 2.
	if _, e, code := cli(t, "status", "-nosuch", "a@b"); code != 2 || !strings.Contains(e, "nosuch") {
		t.Errorf("bad flag: %d %q", code, e)
	}
}

// The demo passes, prints each step after the state changes that led to
// it (every node's change to ready with all members comes before
// "formed"), with the nodes' timestamps; SIGINT in the middle stops the
// nodes in order.
func TestDemo(t *testing.T) {
	env := []string{"ERL_EPMD_PORT=" + freePort(t)}
	p := startProc(t, env, "demo")
	if code := p.wait(t, 120*time.Second); code != 0 {
		t.Fatalf("demo: exit %d\n%s\n%s", code, strings.Join(p.all, "\n"), p.errb)
	}
	ready := map[string]bool{}
	for _, l := range p.all {
		if strings.HasPrefix(l, "== formed") {
			if len(ready) != 3 {
				t.Fatalf("formed printed before the changes that led to it (ready seen on %v):\n%s", ready, strings.Join(p.all, "\n"))
			}
			break
		}
		if f := strings.Fields(l); len(f) > 4 && f[4] == "ready" && strings.Contains(l, "members 3/") {
			if _, err := time.Parse("15:04:05.000", f[0]); err != nil {
				t.Errorf("change without a timestamp: %q", l)
			}
			ready[f[1]] = true
		}
	}
	if !strings.Contains(strings.Join(p.all, "\n"), "== demo passed") {
		t.Fatalf("no verdict:\n%s", strings.Join(p.all, "\n"))
	}

	p = startProc(t, env, "demo", "-prefix", "demoint")
	p.waitLine(t, 60*time.Second, "the kill", func(l string) bool { return strings.HasPrefix(l, "== kill -9") })
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 30*time.Second); code != 130 {
		t.Fatalf("interrupted demo: exit %d, want 130\n%s", code, strings.Join(p.all, "\n"))
	}
	out := strings.Join(p.all, "\n")
	if !strings.Contains(out, "== interrupted") || !strings.Contains(out, "stopping   -> stopped") {
		t.Fatalf("interrupted demo did not stop the nodes in order:\n%s", out)
	}
}

// A failed start says why once, in cloister's words, with no Ergo warning
// dump before it; -log-level picks which of cloister's lines show.
func TestFailedStartSaysWhyOnce(t *testing.T) {
	port := privateEPMD(t)
	start := func(name string, extra ...string) (string, int) {
		args := append([]string{"node", "-name", name, "-epmd-port", port, "-consensus", "2", "-start-timeout", "1s",
			"-sentry", name + ",missing_peer@127.0.0.1"}, extra...)
		_, e, code := cli(t, args...)
		return e, code
	}
	e, code := start("failstart_0@127.0.0.1")
	if code != 1 || !strings.Contains(e, "missing_peer@127.0.0.1") {
		t.Fatalf("exit %d; stderr does not name the missing node:\n%s", code, e)
	}
	if strings.Contains(e, "WARNING!") || strings.Contains(e, "initialization process failed") || strings.Contains(e, "StartError{") {
		t.Fatalf("Ergo's dump precedes our message:\n%s", e)
	}
	if e, code = start("failstart_1@127.0.0.1", "-log-level", "debug"); code != 1 || !strings.Contains(e, "-> assembling") {
		t.Errorf("-log-level debug: exit %d, info lines missing:\n%s", code, e)
	}
	// At error level the state changes are gone; the reason stays.
	e, code = start("failstart_2@127.0.0.1", "-log-level", "error")
	if code != 1 || strings.Contains(e, "-> assembling") || !strings.Contains(e, "missing_peer@127.0.0.1") {
		t.Errorf("-log-level error: exit %d:\n%s", code, e)
	}
	if _, e, code := cli(t, "node", "-log-level", "loud", "-name", "x@127.0.0.1"); code != 2 || !strings.Contains(e, "want error, warning, info or debug") {
		t.Errorf("bad level: %d %q", code, e)
	}
}

// SIGTERM to `cloister test` while its command runs passes the signal on,
// then stops the cluster; the exit code says it was interrupted.
func TestTestCommandStopsOnSIGTERM(t *testing.T) {
	env := []string{"ERL_EPMD_PORT=" + freePort(t)}
	p := startProc(t, env, "test", "-n", "1", "-prefix", "clisig", "--", "sh", "-c", "echo command running; exec sleep 60")
	p.waitLine(t, 60*time.Second, "the command", func(l string) bool { return l == "command running" })
	sent := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code := p.wait(t, 20*time.Second)
	t.Logf("exit %d after %s", code, time.Since(sent).Round(time.Millisecond))
	if code != 130 {
		t.Fatalf("exit %d, want 130\n%s", code, p.errb)
	}
}

// `cloister status` (text and -json) and each node's /status show every
// member's roles and metadata, for the node asked and the others: a
// cluster of two workers and an api node (`cloister node` processes) with
// ring jobs restricted to the workers.
func TestStatusShowsEveryMembersRoles(t *testing.T) {
	port := privateEPMD(t)
	names := []string{"rolew_0@127.0.0.1", "rolew_1@127.0.0.1", "roleapi_0@127.0.0.1"}
	roles := []string{"worker", "worker", "api"}
	var https []string
	for i, name := range names {
		p := startProc(t, nil, "node", "-name", name, "-epmd-port", port, "-cookie", "rolecookie", "-events",
			"-sentry", strings.Join(names, ","), "-consensus", "3", "-http", "127.0.0.1:0",
			"-roles", roles[i], "-meta", "index="+strconv.Itoa(i), "-groups", "jobs", "-ring-roles", "jobs=worker")
		l := p.waitLine(t, 30*time.Second, "the http address", func(l string) bool { return strings.Contains(l, `"event":"listening"`) })
		var e struct{ HTTP string }
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.HTTP == "" {
			t.Fatalf("listening line %q: %v", l, err)
		}
		https = append(https, e.HTTP)
	}
	wantRoles := map[string][]string{names[0]: {"worker"}, names[1]: {"worker"}, names[2]: {"api"}}
	wantMeta := map[string]map[string]string{names[0]: {"index": "0"}, names[1]: {"index": "1"}, names[2]: {"index": "2"}}
	type statusJSON struct {
		State       string
		Members     []string
		Roles       []string
		Meta        map[string]string
		MemberRoles map[string][]string          `json:"member_roles"`
		MemberMeta  map[string]map[string]string `json:"member_meta"`
	}
	for i, name := range []string{names[2], names[0]} { // the api node and a worker
		var s statusJSON
		deadline := time.Now().Add(60 * time.Second)
		for {
			out, e, code := cli(t, "status", "-json", "-epmd-port", port, "-cookie", "rolecookie", name)
			s = statusJSON{}
			if code == 0 && json.Unmarshal([]byte(out), &s) == nil && len(s.Members) == 3 && len(s.MemberRoles) == 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("status -json %s: %d %q %q", name, code, out, e)
			}
			time.Sleep(200 * time.Millisecond)
		}
		self := []int{2, 0}[i]
		if fmt.Sprint(s.Roles) != fmt.Sprint([]string{roles[self]}) || s.Meta["index"] != strconv.Itoa(self) {
			t.Errorf("status -json %s: its own roles %v meta %v", name, s.Roles, s.Meta)
		}
		if fmt.Sprint(s.MemberRoles) != fmt.Sprint(wantRoles) || fmt.Sprint(s.MemberMeta) != fmt.Sprint(wantMeta) {
			t.Errorf("status -json %s: member roles %v meta %v, want %v %v", name, s.MemberRoles, s.MemberMeta, wantRoles, wantMeta)
		}
		text, e, code := cli(t, "status", "-epmd-port", port, "-cookie", "rolecookie", name)
		if code != 0 {
			t.Fatalf("status %s: %d %q", name, code, e)
		}
		t.Logf("cloister status %s:\n%s", name, text)
		for j, n := range names {
			line := fmt.Sprintf("member:    %s roles [%s] meta [index=%d]\n", n, roles[j], j)
			if !strings.Contains(text, line) {
				t.Errorf("status %s: no %q in\n%s", name, line, text)
			}
		}
		if want := fmt.Sprintf("roles:     [%s]\nmeta:      [index=%d]\n", roles[self], self); !strings.Contains(text, want) {
			t.Errorf("status %s: no %q in\n%s", name, want, text)
		}
	}
	// /status of every node: every member's roles and metadata, and the
	// jobs ring of the two workers.
	for i, addr := range https {
		var s struct {
			Members []string
			Roles   map[string][]string
			Meta    map[string]map[string]string
			Rings   map[string]struct{ Members []string }
		}
		r, err := http.Get("http://" + addr + "/status")
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(r.Body).Decode(&s)
		r.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Members) != 3 || fmt.Sprint(s.Roles) != fmt.Sprint(wantRoles) || fmt.Sprint(s.Meta) != fmt.Sprint(wantMeta) ||
			fmt.Sprint(s.Rings["jobs"].Members) != fmt.Sprint(names[:2]) {
			t.Errorf("/status of %s: members %v roles %v meta %v jobs ring %v", names[i], s.Members, s.Roles, s.Meta, s.Rings["jobs"].Members)
		}
	}
}
