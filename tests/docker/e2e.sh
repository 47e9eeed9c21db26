#!/usr/bin/env bash
# The container scenario on a real Docker engine (tests/docker/e2e_test.go):
# build the example's static binary and FROM scratch image, compose up 3
# replicas, kill one, restart it under a new address, scale to 5, cut one
# off the network and reconnect it; print the timings.
#
# Skips with a loud message (exit 0) when no Docker engine answers or
# CLOISTER_SKIP_DOCKER=1. Bounded in time; whatever happens, removes every
# container, network and image named cloister-e2e*.
# Usage: tests/docker/e2e.sh [go test flags...]
set -euo pipefail
cd "$(dirname "$0")/../.."

loud_skip() {
  {
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    echo "!! SKIPPED: Docker end-to-end scenario (tests/docker/e2e.sh)"
    echo "!! $1"
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  } >&2
  exit 0
}

[ "${CLOISTER_SKIP_DOCKER:-}" = 1 ] && loud_skip "CLOISTER_SKIP_DOCKER=1"
command -v docker >/dev/null 2>&1 || loud_skip "no docker command on this machine"
timeout 20 docker info >/dev/null 2>&1 || loud_skip "no Docker engine answers 'docker info' within 20 s"
if ! docker-compose version >/dev/null 2>&1 && ! docker compose version >/dev/null 2>&1; then
  loud_skip "neither docker-compose nor 'docker compose' works"
fi

# Everything the scenario creates is named cloister-e2e*: remove it all.
cleanup() {
  local ids
  ids=$(timeout 30 docker ps -aq --filter label=com.docker.compose.project=cloister-e2e 2>/dev/null || true)
  ids="$ids $(timeout 30 docker ps -aq --filter name=cloister-e2e 2>/dev/null || true)"
  if [ -n "${ids// /}" ]; then
    # shellcheck disable=SC2086
    timeout 60 docker rm -f $ids >/dev/null 2>&1 || true
  fi
  for n in $(timeout 30 docker network ls -q --filter name=cloister-e2e 2>/dev/null || true); do
    timeout 30 docker network rm "$n" >/dev/null 2>&1 || true
  done
  for i in $(timeout 30 docker images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null | grep '^cloister-e2e-' || true); do
    timeout 30 docker rmi -f "$i" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The test bounds itself at 170 s and cleans up; go test's own timeout and
# the outer timeout are the backstops (a killed test leaves its cleanup to
# the trap above).
CLOISTER_DOCKER_E2E=1 timeout -k 10 240 \
  go test -count=1 -v -timeout 210s -run '^TestDockerScenario$' "$@" ./tests/docker
