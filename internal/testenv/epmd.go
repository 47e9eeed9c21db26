// Package testenv gives tests the pieces of a real environment: a private
// epmd on a free port, free TCP ports, and process bookkeeping so nothing a
// test starts outlives it.
package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// EPMD is an epmd daemon run in the foreground as a child of the test
// process, on a private port, so tests never touch a shared 4369.
type EPMD struct {
	Port uint16
	cmd  *exec.Cmd
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (uint16, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port), nil
}

// StartEPMD starts `epmd -port P` (P free) and waits until it accepts.
// The CLOISTER_EPMD environment variable names the binary (default "epmd").
func StartEPMD() (*EPMD, error) {
	bin := os.Getenv("CLOISTER_EPMD")
	if bin == "" {
		bin = "epmd"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("testenv: epmd not found (install erlang-base or run tests/run): %w", err)
	}
	return StartEPMDWith(path)
}

// StartEPMDWith runs `path args... -port P` as the epmd (the system epmd,
// or `cloister epmd`, which serves cloister's own EPMD).
func StartEPMDWith(path string, args ...string) (*EPMD, error) {
	for attempt := 0; attempt < 5; attempt++ {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(path, append(append([]string(nil), args...), "-port", strconv.Itoa(int(port)))...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		e := &EPMD{Port: port, cmd: cmd}
		if waitListening(port, 5*time.Second) {
			return e, nil
		}
		e.Stop()
	}
	return nil, fmt.Errorf("testenv: epmd did not start")
}

// StartEPMDOn runs `path args... -port port` (path "": the system epmd,
// $CLOISTER_EPMD or "epmd") and waits until it accepts.
func StartEPMDOn(port uint16, path string, args ...string) (*EPMD, error) {
	if path == "" {
		bin := os.Getenv("CLOISTER_EPMD")
		if bin == "" {
			bin = "epmd"
		}
		p, err := exec.LookPath(bin)
		if err != nil {
			return nil, fmt.Errorf("testenv: epmd not found: %w", err)
		}
		path = p
	}
	cmd := exec.Command(path, append(append([]string(nil), args...), "-port", strconv.Itoa(int(port)))...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	e := &EPMD{Port: port, cmd: cmd}
	if waitListening(port, 5*time.Second) {
		return e, nil
	}
	e.Stop()
	return nil, fmt.Errorf("testenv: epmd did not start on port %d", port)
}

// Addr is "127.0.0.1:port".
func (e *EPMD) Addr() string { return fmt.Sprintf("127.0.0.1:%d", e.Port) }

// Stop kills the epmd this value started, and only that one.
func (e *EPMD) Stop() {
	if e == nil || e.cmd == nil || e.cmd.Process == nil {
		return
	}
	_ = e.cmd.Process.Kill()
	_, _ = e.cmd.Process.Wait()
	e.cmd = nil
}

func waitListening(port uint16, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}
