package erltest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// ScriptTimeout bounds one RunModule; a run takes about a second.
const ScriptTimeout = 5 * time.Minute

// RequireErl skips the test, loudly, when OTP is not installed; what names
// what goes unverified then.
func RequireErl(t testing.TB, what string) (erl, erlc string) {
	t.Helper()
	erl, err1 := exec.LookPath("erl")
	erlc, err2 := exec.LookPath("erlc")
	if err1 != nil || err2 != nil {
		t.Skip("SKIPPED: erl/erlc not on PATH. " + what + " is NOT being verified against Erlang/OTP. " +
			"Install erlang-base (Debian) to run this test.")
	}
	return erl, erlc
}

// RunModule compiles src (a .erl file) into a fresh directory and runs
// `erl -noshell -pa Dir -run Module main Args...` there, without
// distribution (no epmd). On failure or timeout the whole process group of
// the erl it started is killed by its id.
func RunModule(t testing.TB, what, src string, args ...string) (stdout []byte, err error) {
	t.Helper()
	erl, erlc := RequireErl(t, what)
	dir := t.TempDir()
	if out, err := exec.Command(erlc, "-o", dir, src).CombinedOutput(); err != nil {
		t.Fatalf("erlc %s: %v\n%s", src, err, out)
	}
	module := filepath.Base(src[:len(src)-len(filepath.Ext(src))])

	ctx, cancel := context.WithTimeout(context.Background(), ScriptTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, erl, append([]string{"-noshell", "-pa", dir, "-run", module, "main"}, args...)...)
	cmd.Dir = dir // a crash dump, if any, lands in the temporary directory
	cmd.Env = append(os.Environ(), "ERL_CRASH_DUMP_SECONDS=0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		if cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // leave nothing behind (ESRCH if gone)
		}
		if ctx.Err() != nil {
			err = errors.Join(err, ctx.Err())
		}
		return out.Bytes(), errors.Join(err, errors.New("erl stderr: "+errOut.String()))
	}
	return out.Bytes(), nil
}
