package interop

import (
	"bufio"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloister-go/cloister/internal/erltest"
	"github.com/cloister-go/cloister/internal/testenv"
)

// TestExampleBeam runs examples/beam as its README does: an existing BEAM
// cluster (an erl node and, when installed, an Elixir node, both running
// cloister_member for app "shop"), then the Go service joining it through
// the erl node. It checks the service's own owner comparison, a call and an
// rpc each way, and that the BEAM side names the owner the service printed.
func TestExampleBeam(t *testing.T) {
	rel := firstRelease()
	r := runtimes[rel]
	dumpLogsOnFailure(t)
	check(t, rel, "examples/beam: a Go service joins an Erlang/Elixir cluster", func(t *testing.T) string {
		return runExample(t, r, elixirOK[rel])
	})
}

func runExample(t *testing.T, r erltest.Runtime, withElixir bool) string {
	dir := beamDir(t, r)
	shop1, err := env.StartNode("shop1", erltest.NodeOptions{Runtime: r, Paths: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	defer shop1.Stop()
	expectEval(t, shop1, `{ok, _} = cloister_member:start(<<"shop">>, [], #{consensus => 3}), ok`, "ok")
	shop2, err := env.StartNode("shop2", erltest.NodeOptions{Runtime: r, Paths: []string{dir}, Elixir: withElixir})
	if err != nil {
		t.Fatal(err)
	}
	defer shop2.Stop()
	expectEval(t, shop2, fmt.Sprintf(`{ok, _} = cloister_member:start(<<"shop">>, [%s], #{consensus => 3}), ok`, q(shop1.Name)), "ok")

	bin := filepath.Join(t.TempDir(), "beam")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/cloister-go/cloister/examples/beam").CombinedOutput(); err != nil {
		t.Fatalf("build examples/beam: %v\n%s", err, out)
	}
	goName := "shopgo@127.0.0.1"
	cmd := exec.Command(bin, "-name", goName, "-cookie", env.Cookie, "-sentry", shop1.Name, "-consensus", "3",
		"-otp-app", "shop", "-epmd-port", strconv.Itoa(int(env.EPMD.Port)), "-keys", "1000", "-start-timeout", "60s")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = logs
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // no-op once it exited
	}()

	var printed []string
	var owner0 string
	deadline := time.After(90 * time.Second)
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("examples/beam exited: %v\n%s", <-exited, strings.Join(printed, "\n"))
			}
			printed = append(printed, l)
			t.Log("examples/beam: " + l)
			if rest, ok := strings.CutPrefix(l, `owner of "cart:0": `); ok {
				owner0 = strings.Fields(rest)[0]
			}
			if strings.HasPrefix(l, "owners DIFFER") || strings.HasPrefix(l, "start failed") {
				t.Fatal(l)
			}
			if strings.HasPrefix(l, "serving") {
				break wait
			}
		case <-deadline:
			t.Fatalf("examples/beam: no `serving` line in 90 s:\n%s", strings.Join(printed, "\n"))
		}
	}
	joined := time.Since(t0)
	if !strings.Contains(strings.Join(printed, "\n"), "owners agree: 1000/1000 keys with 2 peers") {
		t.Fatalf("no owner agreement line:\n%s", strings.Join(printed, "\n"))
	}
	// A call and an rpc from each BEAM node into the Go service.
	expectEval(t, shop1, fmt.Sprintf(`gen_server:call({greeter, %s}, {hello, <<"erl">>})`, q(goName)),
		fmt.Sprintf("{hello_from,%s,<<101,114,108>>}", q(goName)))
	expectEval(t, shop1, fmt.Sprintf(`rpc:call(%s, shop, price, [<<"apple">>])`, q(goName)), "105")
	expectEval(t, shop2, fmt.Sprintf(`'Elixir.GenServer':call({greeter, %s}, {hello, <<"ex">>})`, q(goName)),
		fmt.Sprintf("{hello_from,%s,<<101,120>>}", q(goName)))
	// The BEAM side names the owner the Go service printed.
	for _, n := range []*erltest.Node{shop1, shop2} {
		expectEval(t, n, `cloister_member:owner(<<"cart:0">>)`, q(owner0))
	}
	// Stopping: SIGTERM, orderly exit 0; the BEAM members drop it.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for range lines {
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("examples/beam exit: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("examples/beam did not stop on SIGTERM within 15 s")
	}
	want := "[" + strings.Join(sortedNames(shop1.Name, shop2.Name), ",") + "]"
	if !testenv.Poll(10*time.Second, func() bool {
		v, err := shop1.Eval("cloister_member:members()")
		return err == nil && v == want
	}) {
		t.Errorf("shop1 still lists the Go service: %s", evalT(t, shop1, "cloister_member:members()"))
	}
	kind := "erl"
	if withElixir {
		kind = "erl + Elixir"
	}
	return fmt.Sprintf("%s cluster; ready, 1000 owners compared with both, %s after start", kind, ms(joined))
}

func sortedNames(names ...string) []string {
	out := slices.Sorted(slices.Values(names))
	for i, n := range out {
		out[i] = q(n)
	}
	return out
}
