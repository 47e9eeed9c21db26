package erltest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func TestHostNodeEvalAndStop(t *testing.T) {
	env, err := NewEnv("")
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	n, err := env.StartNode("a", NodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := n.Eval("X = 20, X + 22"); err != nil || got != "42" {
		t.Fatalf("eval: %q, %v", got, err)
	}
	if got, err := n.Eval(`{node(), "hi", <<"b">>}`); err != nil || got != "{'"+n.Name+"',[104,105],<<98>>}" {
		t.Fatalf("eval: %q, %v", got, err)
	}
	var ee *EvalError
	if _, err := n.Eval("error(boom)"); !errors.As(err, &ee) || ee.Exception != "error:boom" {
		t.Fatalf("eval error: %v", err)
	}
	n.Stop()
	select {
	case <-n.Exited():
	default:
		t.Fatal("node still running after Stop")
	}
	if _, err := n.Eval("1"); err == nil {
		t.Fatal("eval on a stopped node succeeded")
	}
}

func TestCompileAndConnectTwoNodes(t *testing.T) {
	env, err := NewEnv("c00kie")
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	dir := t.TempDir()
	src := filepath.Join(dir, "erltest_echo.erl")
	if err := os.WriteFile(src, []byte("-module(erltest_echo).\n-export([echo/1]).\necho(X) -> {echo, X}.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	beams, err := env.Compile(Host(), src)
	if err != nil {
		t.Fatal(err)
	}
	a, err := env.StartNode("a", NodeOptions{Paths: []string{beams}})
	if err != nil {
		t.Fatal(err)
	}
	ex, err := env.StartNode("ex", NodeOptions{Elixir: true, Paths: []string{beams}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := ex.Eval("rpc:call('" + a.Name + "', erltest_echo, echo, [1])")
	if err != nil || got != "{echo,1}" {
		t.Fatalf("rpc from elixir: %q, %v", got, err)
	}
	if got, err := ex.Eval("'Elixir.String':upcase(<<\"x\">>)"); err != nil || got != "<<88>>" {
		t.Fatalf("elixir call: %q, %v", got, err)
	}
}

func TestChrootRuntimes(t *testing.T) {
	for _, v := range []string{"27", "29"} {
		t.Run("OTP"+v, func(t *testing.T) {
			r, err := Chroot(v)
			if err != nil {
				t.Skipf("SKIPPED (no chroot): %v", err)
			}
			r, err = r.Probe()
			if err != nil {
				t.Fatal(err)
			}
			if r.Release != v {
				t.Fatalf("release %q, want %q", r.Release, v)
			}
			env, err := NewEnv("")
			if err != nil {
				t.Fatal(err)
			}
			defer env.Close()
			n, err := env.StartNode("c", NodeOptions{Runtime: r})
			if err != nil {
				t.Fatal(err)
			}
			host, err := env.StartNode("h", NodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := host.Eval("rpc:call('" + n.Name + "', erlang, system_info, [otp_release])")
			want := fmt.Sprintf("[%d,%d]", v[0], v[1]) // the string "27" as ~w writes it
			if err != nil || got != want {
				t.Fatalf("cross-release rpc: %q, %v", got, err)
			}
		})
	}
}
