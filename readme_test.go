package cloister_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloister-go/cloister/internal/testenv"
)

// fence matches a fenced block of README.md: its info string and body.
var fence = regexp.MustCompile("(?ms)^```([^\\n]*)\\n(.*?)^```")

func readmeBlocks(t *testing.T, lang string) []string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range fence.FindAllStringSubmatch(string(b), -1) {
		if strings.TrimSpace(m[1]) == lang {
			out = append(out, m[2])
		}
	}
	return out
}

// buildReadmeProgram builds src as the main package of a module whose
// go.mod is README's, with cloister replaced by this checkout (no network:
// every module comes from the local cache).
func buildReadmeProgram(t *testing.T, gomod, src string) string {
	t.Helper()
	root, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sum, err := os.ReadFile("go.sum")
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"go.mod":  gomod + "\nreplace github.com/cloister-go/cloister => " + root + "\n",
		"go.sum":  string(sum),
		"main.go": src,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build README's programs")
	}
	bin := filepath.Join(dir, "prog")
	for _, args := range [][]string{{"mod", "tidy"}, {"vet", "."}, {"build", "-o", bin, "."}} {
		cmd := exec.Command(goBin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("README program: go %s: %v\n%s\n--- main.go:\n%s", strings.Join(args, " "), err, out, src)
		}
	}
	return bin
}

// Every Go program in README.md builds (and vets) in a module with
// README's go.mod, and the Quick start, run three times as the README
// says, forms a 3-node cluster that agrees on the owner of cart:42 and
// reaches every node's cart_server; SIGTERM stops each in order.
func TestReadmeQuickStart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds README's programs and starts 3 node processes")
	}
	mods := readmeBlocks(t, "go.mod")
	progs := readmeBlocks(t, "go")
	if len(mods) != 1 || len(progs) == 0 {
		t.Fatalf("README.md has %d go.mod blocks and %d go blocks; want 1 and at least 1", len(mods), len(progs))
	}
	if !strings.Contains(mods[0], "github.com/ergo-services/ergo v1.999.224") {
		t.Fatalf("README's go.mod does not pin Ergo v1.999.224:\n%s", mods[0])
	}
	var quick string
	for _, p := range progs {
		bin := buildReadmeProgram(t, mods[0], p)
		if strings.Contains(p, `"cart_server"`) && quick == "" {
			quick = bin
		}
	}
	if quick == "" {
		t.Fatal("no Quick start program (registering cart_server) in README.md")
	}

	epmd, err := testenv.StartEPMD()
	if err != nil {
		t.Fatal(err)
	}
	defer epmd.Stop()
	type node struct {
		name string
		cmd  *exec.Cmd
		out  *testenv.Buffer
		done chan struct{}
	}
	var nodes []*node
	for i := 0; i < 3; i++ {
		n := &node{name: "shop_" + strconv.Itoa(i) + "@127.0.0.1", out: &testenv.Buffer{}, done: make(chan struct{})}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		n.cmd = exec.CommandContext(ctx, quick, "-name", n.name)
		n.cmd.Env = append(os.Environ(), "ERL_EPMD_PORT="+strconv.Itoa(int(epmd.Port)))
		n.cmd.Stdout, n.cmd.Stderr = n.out, n.out
		if err := n.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { _ = n.cmd.Wait(); close(n.done) }()
		defer func() { _ = n.cmd.Process.Kill(); <-n.done }()
		nodes = append(nodes, n)
	}
	dump := func() string {
		var b strings.Builder
		for _, n := range nodes {
			b.WriteString("\n--- " + n.name + ":\n" + n.out.String())
		}
		return b.String()
	}
	owner := regexp.MustCompile(`cart:42 belongs to (\S+) \(this node: (true|false)\)`)
	owners, mine := map[string]bool{}, 0
	for _, n := range nodes {
		for deadline := time.Now().Add(2 * time.Minute); strings.Count(n.out.String(), "reply from") < 3; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: no 3 replies within 2 minutes%s", n.name, dump())
			}
		}
		out := n.out.String()
		if !strings.Contains(out, "ready: [shop_0@127.0.0.1 shop_1@127.0.0.1 shop_2@127.0.0.1]") {
			t.Errorf("%s did not print the 3 members%s", n.name, dump())
		}
		for _, peer := range nodes {
			if !strings.Contains(out, "reply from "+peer.name+" [cart "+peer.name+" hello] <nil>") {
				t.Errorf("%s has no reply from %s's cart_server%s", n.name, peer.name, dump())
			}
		}
		m := owner.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("%s printed no owner%s", n.name, dump())
		}
		owners[m[1]] = true
		if m[2] == "true" {
			mine++
			if m[1] != n.name {
				t.Errorf("%s says it owns cart:42 but names %s", n.name, m[1])
			}
		}
	}
	if len(owners) != 1 || mine != 1 {
		t.Fatalf("owners %v, %d nodes say mine; want one owner, one 'this node: true'%s", owners, mine, dump())
	}
	for _, n := range nodes {
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, n := range nodes {
		select {
		case <-n.done:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s still running 30 s after SIGTERM%s", n.name, dump())
		}
		if code := n.cmd.ProcessState.ExitCode(); code != 0 || !strings.Contains(n.out.String(), "stopping -> stopped") {
			t.Errorf("%s: exit %d, want 0 after an orderly stop%s", n.name, code, dump())
		}
	}
}
