package erltest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// TimedPing runs a throwaway erl node (the host's erl) that pings target
// with net_adm:ping through the epmd on epmdPort: it returns how long the
// ping took in milliseconds and its result (pong or pang).
func TimedPing(cookie string, epmdPort uint16, target string, timeout time.Duration) (ms float64, result string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	name := fmt.Sprintf("pinger_%d@127.0.0.1", os.Getpid())
	eval := fmt.Sprintf(`{T, R} = timer:tc(net_adm, ping, ['%s']), io:format("~p ~p~n", [T, R]), halt().`, target)
	cmd := exec.CommandContext(ctx, "erl", "-noshell", "-name", name, "-setcookie", cookie, "-eval", eval)
	cmd.Env = append(os.Environ(), "ERL_EPMD_PORT="+strconv.Itoa(int(epmdPort)))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.Output()
	if err != nil {
		return 0, "", fmt.Errorf("erl: %v: %s", err, out)
	}
	var us float64
	if _, err := fmt.Sscanf(strings.TrimSpace(string(out)), "%f %s", &us, &result); err != nil {
		return 0, "", fmt.Errorf("erl said %q", out)
	}
	return us / 1000, result, nil
}
