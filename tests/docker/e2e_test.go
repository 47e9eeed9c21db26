// Package docker runs the container scenario (a compose service
// scaled to 3 replicas that find each other by the service name) on a real
// Docker engine: the example image under examples/docker, scaled with
// compose, killed, restarted under a new address, scaled out, cut off the
// network and reconnected. It reads each node's /status and prints how long
// the cluster took to notice each change.
//
// It runs only with CLOISTER_DOCKER_E2E=1; tests/docker/e2e.sh sets it,
// bounds the time and removes everything named cloister-e2e* afterwards,
// whatever happened. This test process starts no Ergo node.
package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloister-go/cloister/listener"
)

const (
	project     = "cloister-e2e" // compose project: containers, network
	imageRepo   = "cloister-e2e-app"
	placeholder = "cloister-e2e-placeholder"
	service     = "app"
	alias       = "cloister_test.local"
	otpApp      = "cloister_test" // as in examples/docker/compose.yml
	network     = project + "_default"

	// total bounds the whole scenario; e2e.sh gives go test a little more
	// so that a stuck step fails here and the cleanup still runs.
	total = 170 * time.Second
	// step bounds one wait for the cluster.
	step = 40 * time.Second
	// poll is the /status polling period: the timings' resolution.
	poll = 20 * time.Millisecond
)

// container is what the test needs of `docker inspect`.
type container struct {
	ID, Name   string
	IP         string // on the compose network; "" when disconnected
	Running    bool
	StartedAt  time.Time
	FinishedAt time.Time
}

func (c container) node() string { return otpApp + "@" + c.IP }

// timing is one measured interval.
type timing struct {
	what string
	d    time.Duration
	note string
}

type e2e struct {
	t       *testing.T
	ctx     context.Context
	root    string
	compose []string // "docker-compose" or "docker compose"
	image   string
	viaExec bool // read /status with docker exec: the host cannot reach the containers
	client  *http.Client
	timings []timing
}

func TestDockerScenario(t *testing.T) {
	if os.Getenv("CLOISTER_DOCKER_E2E") != "1" {
		t.Skip("Docker end-to-end scenario: run tests/docker/e2e.sh (sets CLOISTER_DOCKER_E2E=1)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), total)
	defer cancel()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	e := &e2e{t: t, ctx: ctx, root: root, client: &http.Client{Timeout: time.Second},
		image: fmt.Sprintf("%s:%d", imageRepo, time.Now().UnixNano())}
	e.compose = composeCommand(t)

	e.teardown(false) // leftovers of an earlier run that was killed
	t.Cleanup(func() { e.teardown(t.Failed()) })
	e.buildImage()

	// 1. Three replicas form one cluster.
	t0 := time.Now()
	e.composeUp(3)
	nodes := e.containers(3)
	at := e.await("3 replicas ready with 3 members", nodes, formed(nodes, "ready"))
	e.record("compose up --scale app=3 → all ready", at.Sub(t0),
		fmt.Sprintf("%s after the last container started", ms(at.Sub(lastStart(nodes)))))

	// 2. Kill one: the survivors drop it and rehash (2 members < consensus 3).
	victim, survivors := nodes[1], without(nodes, nodes[1])
	t0 = time.Now()
	e.docker("kill", victim.ID)
	dead := e.inspect(victim.ID)
	at = e.await("survivors rehash without "+victim.node(), survivors, formed(survivors, "rehashing"))
	e.record("docker kill → survivors rehashed", at.Sub(t0),
		fmt.Sprintf("Docker recorded the exit %s after `docker kill` began", ms(dead.FinishedAt.Sub(t0))))

	// 3. Start it again under a new address: Docker hands out the lowest
	// free address, so a placeholder takes the old one first.
	e.docker("run", "-d", "--name", placeholder, "--label", project+"=1", "--network", network,
		"-e", "CLOISTER_NODE=placeholder@127.0.0.1", "-e", "CLOISTER_HTTP=off", e.image)
	if p := e.inspect(placeholder); p.IP != victim.IP {
		t.Logf("note: the placeholder got %s, not the old address %s", p.IP, victim.IP)
	}
	t0 = time.Now()
	e.docker("start", victim.ID)
	restarted := e.inspect(victim.ID)
	if restarted.IP == victim.IP {
		t.Fatalf("the restarted container kept its address %s: the new-address case was not exercised", victim.IP)
	}
	nodes = append(survivors, restarted)
	at = e.await(fmt.Sprintf("all rejoin: %s replaced by %s", victim.node(), restarted.node()), nodes, formed(nodes, "ready"))
	e.record("docker start (new address) → all ready", at.Sub(restarted.StartedAt),
		fmt.Sprintf("from the container's start; %s after `docker start` began; %s → %s", ms(at.Sub(t0)), victim.IP, restarted.IP))

	// 4. Scale out to five.
	t0 = time.Now()
	e.composeUp(5)
	nodes = e.containers(5)
	at = e.await("5 replicas ready with 5 members", nodes, formed(nodes, "ready"))
	e.record("compose up --scale app=5 → all ready", at.Sub(t0),
		fmt.Sprintf("%s after the last container started", ms(at.Sub(lastStart(nodes)))))

	// 5. Cut one off the network: the others drop it (no FIN arrives, the
	// heartbeat decides), it finds itself alone; reconnected, it comes back.
	cut, rest := nodes[0], without(nodes, nodes[0])
	t0 = time.Now()
	e.docker("network", "disconnect", network, cut.ID)
	at = e.await("the others drop "+cut.node(), rest, formed(rest, "ready"))
	e.record("network disconnect → the others dropped it", at.Sub(t0), "no FIN: the heartbeat decides (RemoveAfter 5 s)")
	e.awaitAlone(cut)
	t0 = time.Now()
	// Compose's aliases are per connection: give them back.
	e.docker("network", "connect", "--alias", alias, "--alias", service, network, cut.ID)
	back := e.inspect(cut.ID)
	if back.IP != cut.IP {
		// The node's name and listener are bound to the old address.
		t.Fatalf("reconnected under a new address %s (was %s): the node keeps its old name", back.IP, cut.IP)
	}
	at = e.await(cut.node()+" comes back", nodes, formed(nodes, "ready"))
	e.record("network connect → all ready", at.Sub(t0), "from `docker network connect` began")

	e.report()
}

// formed is the condition "these containers form one cluster": each node
// is named after its address, is in state want, lists exactly these nodes
// as members and in its ring, and every ring hash is the same.
func formed(cs []container, want string) func(map[string]listener.Snapshot) error {
	var names []string
	for _, c := range cs {
		names = append(names, c.node())
	}
	slices.Sort(names)
	return func(snaps map[string]listener.Snapshot) error {
		var hash uint64
		for i, c := range cs {
			s := snaps[c.ID]
			r := s.Rings[otpApp]
			switch {
			case s.Node != c.node():
				return fmt.Errorf("%s is named %q, want %q", c.Name, s.Node, c.node())
			case string(s.State) != want:
				return fmt.Errorf("%s is %s, want %s (members %v)", s.Node, s.State, want, s.Members)
			case !slices.Equal(s.Members, names):
				return fmt.Errorf("%s has members %v, want %v", s.Node, s.Members, names)
			case !slices.Equal(r.Members, names):
				return fmt.Errorf("%s ring %s has %v, want %v", s.Node, otpApp, r.Members, names)
			case i > 0 && r.Hash != hash:
				return fmt.Errorf("%s ring hash %x differs from %s's %x", s.Node, r.Hash, cs[0].node(), hash)
			}
			hash = r.Hash
		}
		return nil
	}
}

// await polls the containers' /status until cond holds and returns when the
// cluster got there: the latest publication time among the snapshots that
// satisfy it (the nodes' clock is the host's). That does not depend on how
// soon after a slow docker command the polling began; it is never later
// than the poll that saw it.
func (e *e2e) await(what string, cs []container, cond func(map[string]listener.Snapshot) error) time.Time {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, step)
	defer cancel()
	var last error
	for {
		snaps, err := e.statuses(ctx, cs)
		if err == nil {
			if err = cond(snaps); err == nil {
				seen := time.Now()
				var at, first time.Time
				last := ""
				for _, s := range snaps {
					if s.At.After(at) {
						at, last = s.At, s.Node
					}
					if first.IsZero() || s.At.Before(first) {
						first = s.At
					}
				}
				if at.IsZero() || at.After(seen) {
					at = seen
				}
				e.t.Logf("ok: %s (last there: %s, %s after the first; seen %s later)",
					what, last, ms(at.Sub(first)), ms(seen.Sub(at)))
				return at
			}
		}
		last = err
		select {
		case <-ctx.Done():
			e.t.Fatalf("%s: not within %s: %v", what, step, last)
		case <-time.After(poll):
		}
	}
}

// awaitAlone waits until a container cut off the network sees itself alone.
// The host cannot reach it any more, so its status is read with docker exec.
func (e *e2e) awaitAlone(c container) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, step)
	defer cancel()
	var last error
	for {
		s, err := e.execStatus(ctx, c)
		if err == nil {
			if slices.Equal(s.Members, []string{c.node()}) && s.State == "rehashing" {
				e.t.Logf("ok: %s alone (%s)", c.node(), s.State)
				return
			}
			err = fmt.Errorf("%s is %s with members %v", s.Node, s.State, s.Members)
		}
		last = err
		select {
		case <-ctx.Done():
			e.t.Fatalf("%s alone: not within %s: %v", c.node(), step, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// statuses reads every container's /status at once.
func (e *e2e) statuses(ctx context.Context, cs []container) (map[string]listener.Snapshot, error) {
	out := make(map[string]listener.Snapshot, len(cs))
	errs := make([]error, len(cs))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var s listener.Snapshot
			var err error
			if e.viaExec {
				s, err = e.execStatus(ctx, c)
			} else {
				s, err = e.httpStatus(ctx, c)
			}
			if err != nil {
				errs[i] = err
				return
			}
			mu.Lock()
			out[c.ID] = s
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func (e *e2e) httpStatus(ctx context.Context, c container) (listener.Snapshot, error) {
	var s listener.Snapshot
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.IP+":8080/status", nil)
	if err != nil {
		return s, err
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return s, fmt.Errorf("%s: %w", c.Name, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return s, fmt.Errorf("%s: /status: %w", c.Name, err)
	}
	return s, nil
}

func (e *e2e) execStatus(ctx context.Context, c container) (listener.Snapshot, error) {
	var s listener.Snapshot
	out, err := e.run(ctx, "docker", "exec", c.ID, "/cloister-example", "status")
	if err != nil {
		return s, fmt.Errorf("%s: %w", c.Name, err)
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		return s, fmt.Errorf("%s: status: %w", c.Name, err)
	}
	return s, nil
}

// containers returns the running replicas, n of them, sorted by address;
// it also decides once how /status is read.
func (e *e2e) containers(n int) []container {
	e.t.Helper()
	out := e.docker("ps", "-q", "--filter", "label=com.docker.compose.project="+project,
		"--filter", "label=com.docker.compose.service="+service)
	ids := strings.Fields(out)
	if len(ids) != n {
		e.t.Fatalf("want %d running replicas, docker ps lists %d: %v", n, len(ids), ids)
	}
	cs := e.inspectAll(ids...)
	slices.SortFunc(cs, func(a, b container) int { return compareIP(a.IP, b.IP) })
	for _, c := range cs {
		if c.IP == "" {
			e.t.Fatalf("%s has no address on %s", c.Name, network)
		}
	}
	if !e.viaExec {
		ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
		defer cancel()
		for {
			_, err := e.httpStatus(ctx, cs[0])
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				e.t.Logf("the host cannot reach %s (%v): reading /status with docker exec (coarser timings)", cs[0].IP, err)
				e.viaExec = true
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return cs
}

func (e *e2e) inspect(id string) container {
	e.t.Helper()
	return e.inspectAll(id)[0]
}

func (e *e2e) inspectAll(ids ...string) []container {
	e.t.Helper()
	out := e.docker(append([]string{"inspect"}, ids...)...)
	var raw []struct {
		ID    string `json:"Id"`
		Name  string
		State struct {
			Running    bool
			StartedAt  time.Time
			FinishedAt time.Time
		}
		NetworkSettings struct {
			Networks map[string]struct{ IPAddress string }
		}
	}
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		e.t.Fatalf("docker inspect: %v", err)
	}
	cs := make([]container, 0, len(raw))
	for _, r := range raw {
		cs = append(cs, container{ID: r.ID, Name: strings.TrimPrefix(r.Name, "/"),
			IP: r.NetworkSettings.Networks[network].IPAddress, Running: r.State.Running,
			StartedAt: r.State.StartedAt, FinishedAt: r.State.FinishedAt})
	}
	return cs
}

// buildImage builds the static binary and the FROM scratch image from a
// copy of examples/docker's Dockerfile, as docs/docker.md tells users to.
func (e *e2e) buildImage() {
	e.t.Helper()
	dir := e.t.TempDir()
	for _, f := range []string{"Dockerfile", ".dockerignore"} {
		b, err := os.ReadFile(filepath.Join(e.root, "examples/docker", f))
		if err != nil {
			e.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			e.t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(e.ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", filepath.Join(dir, "bin/cloister-example"), "./examples/docker")
	cmd.Dir = e.root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		e.t.Fatalf("go build ./examples/docker: %v\n%s", err, out)
	}
	e.docker("build", "-q", "-t", e.image, dir)
}

func (e *e2e) composeUp(n int) {
	e.t.Helper()
	e.composeRun(e.ctx, "up", "-d", "--no-build", "--no-recreate", "--scale", fmt.Sprintf("%s=%d", service, n))
}

// composeArgs is the compose command line for this project.
func (e *e2e) composeArgs(args ...string) []string {
	argv := append(slices.Clone(e.compose[1:]), "-p", project, "-f", filepath.Join(e.root, "examples/docker/compose.yml"))
	return append(argv, args...)
}

func (e *e2e) composeRun(ctx context.Context, args ...string) {
	e.t.Helper()
	argv := e.composeArgs(args...)
	cmd := exec.CommandContext(ctx, e.compose[0], argv...)
	// The scenario's counts assume consensus 3 whatever the caller's env.
	cmd.Env = append(os.Environ(), "CLOISTER_IMAGE="+e.image, "CLOISTER_CONSENSUS=3")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		e.t.Fatalf("%s %s: %v\n%s", e.compose[0], strings.Join(argv, " "), err, out.String())
	}
}

// docker runs a docker command that must succeed, and returns its stdout.
func (e *e2e) docker(args ...string) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 60*time.Second)
	defer cancel()
	out, err := e.run(ctx, "docker", args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *e2e) run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// teardown removes everything this scenario creates; after a failure it
// first shows the nodes' logs. Errors are logged, not fatal: it must go on.
func (e *e2e) teardown(failed bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	quiet := func(name string, args ...string) string {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Env = append(os.Environ(), "CLOISTER_IMAGE="+e.image)
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	if failed {
		e.t.Logf("node logs:\n%s", quiet(e.compose[0], e.composeArgs("logs", "--no-color", "--tail", "40")...))
	}
	quiet("docker", "rm", "-f", placeholder)
	quiet(e.compose[0], e.composeArgs("down", "--remove-orphans", "-t", "3")...)
	if e.image != "" {
		quiet("docker", "rmi", "-f", e.image)
	}
}

func (e *e2e) record(what string, d time.Duration, note string) {
	e.timings = append(e.timings, timing{what, d, note})
	e.t.Logf("timing: %s: %s (%s)", what, d.Round(time.Millisecond), note)
}

func (e *e2e) report() {
	how := fmt.Sprintf("/status polled from the host every %s; times are the snapshots' own", poll)
	if e.viaExec {
		how = "/status read with docker exec (each read takes hundreds of ms)"
	}
	var b strings.Builder
	grace := os.Getenv("CLOISTER_FLAP_GRACE")
	if grace == "" {
		grace = "default (1s)"
	}
	fmt.Fprintf(&b, "\nDocker scenario timings (%s; flap grace %s):\n", how, grace)
	for _, t := range e.timings {
		fmt.Fprintf(&b, "  %-45s %8s   %s\n", t.what, t.d.Round(time.Millisecond), t.note)
	}
	fmt.Print(b.String())
}

func composeCommand(t *testing.T) []string {
	if err := exec.Command("docker-compose", "version").Run(); err == nil {
		return []string{"docker-compose"}
	}
	if err := exec.Command("docker", "compose", "version").Run(); err == nil {
		return []string{"docker", "compose"}
	}
	t.Fatal("neither docker-compose nor docker compose works")
	return nil
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }

func without(cs []container, x container) []container {
	var out []container
	for _, c := range cs {
		if c.ID != x.ID {
			out = append(out, c)
		}
	}
	return out
}

func lastStart(cs []container) time.Time {
	var t time.Time
	for _, c := range cs {
		if c.StartedAt.After(t) {
			t = c.StartedAt
		}
	}
	return t
}

// compareIP orders addresses numerically; unparsable ones ("") first.
func compareIP(a, b string) int {
	pa, _ := netip.ParseAddr(a)
	pb, _ := netip.ParseAddr(b)
	return pa.Compare(pb)
}
