#!/usr/bin/env bats
# The keepalived leader check server-with-keepalived.sh renders, run for real (with the real curl) against a
# small HTTP server standing in for nstance-server's /leaderz: it passes on a 200 only, fails on any other
# status, a refused connection or no answer within --check-timeout, and reaches the --health-addr it was
# given (a wildcard is loopback). The check against two real nstance-server replicas, each in its own
# network namespace: test/ops/leaderCheckNetns.test.ts.
bats_require_minimum_version 1.5.0
load helpers

setup() {
  # The stand-in server runs on node (what nstance needs anyway), found before the stubs replace PATH.
  NODE=$(command -v node) || { echo "node is not on PATH: these tests serve /leaderz with it"; return 1; }
  setup_stubs
  export NSTANCE_DEPLOY_ROOT=$BATS_TEST_TMPDIR/root
  export PROXMOX_TOKEN_ID='nstance@pve!nstance-token' PROXMOX_TOKEN_SECRET=11111111-aaaa-bbbb-cccc-222222222222
  export AWS_ACCESS_KEY_ID=AKTEST AWS_SECRET_ACCESS_KEY=secretkey
  unset AWS_REGION AWS_ENDPOINT_URL AWS_S3_USE_PATH_STYLE GOOGLE_APPLICATION_CREDENTIALS PROXMOX_API_URL KEEPALIVED_AUTH_PASS
  BASE=(--shard pve-a --bucket nstance --vip 10.0.0.100/24)
  CHECK=$BATS_TEST_TMPDIR/nstance-check-leader
  SERVED=$BATS_TEST_TMPDIR/served
  SERVER_PID=""
}

teardown() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
}

# render_check [flags…]: the check script a dry-run with these flags would install, written to $CHECK.
render_check() {
  run --separate-stderr "$DEPLOY/server-with-keepalived.sh" --dry-run "${BASE[@]}" "$@"
  expect_status 0
  printf '%s\n' "$output" |
    awk '/^\[dry-run\] write .*nstance-check-leader / { on = 1; next } /^\[dry-run\] [^ ]/ { on = 0 } on' |
    sed -E 's/^\[dry-run\]   \| ?//' >"$CHECK"
  chmod 0755 "$CHECK"
  [ -s "$CHECK" ] || { echo "the dry-run showed no check script:"; printf '%s\n' "$output"; return 1; }
}

# serve HOST: an HTTP server on HOST and a free port (in $PORT) answering every request with the status in
# $SERVED/status (0: accept and never answer), logging "METHOD PATH" lines to $SERVED/requests.
serve() {
  mkdir -p "$SERVED"
  echo 200 >"$SERVED/status"
  : >"$SERVED/requests"
  rm -f "$SERVED/port"
  cat >"$SERVED/server.mjs" <<'JS'
import { createServer } from "node:http"
import { appendFileSync, readFileSync, writeFileSync } from "node:fs"
const [host, dir] = process.argv.slice(2)
const server = createServer((request, response) => {
  appendFileSync(`${dir}/requests`, `${request.method} ${request.url}\n`)
  const status = Number(readFileSync(`${dir}/status`, "utf8").trim())
  if (status !== 0) response.writeHead(status, { "content-type": "application/json" }).end("{}\n")
})
server.on("error", (error) => { writeFileSync(`${dir}/port`, `error ${error.code}`); process.exit(1) })
server.listen(0, host, () => writeFileSync(`${dir}/port`, String(server.address().port)))
JS
  "$NODE" "$SERVED/server.mjs" "$1" "$SERVED" 3>&- &
  SERVER_PID=$!
  local i
  for i in $(seq 100); do [ -s "$SERVED/port" ] && break; sleep 0.05; done
  PORT=$(cat "$SERVED/port")
  [[ $PORT =~ ^[0-9]+$ ]] || { echo "the stand-in server did not start on $1: $PORT"; return 1; }
}

# check: runs the rendered check as keepalived would (the real curl, not the stub).
check() { run env PATH=/usr/bin:/bin "$CHECK"; }

@test "the check passes on a 200 from GET /leaderz only; 503, 500, 204, 301 and 404 fail it" {
  serve 127.0.0.1
  render_check --health-addr "127.0.0.1:$PORT"
  check
  expect_status 0
  for code in 503 500 204 301 404; do
    echo "$code" >"$SERVED/status"
    check
    [ "$status" -eq 1 ] || { echo "HTTP $code: the check exited $status"; return 1; }
  done
  echo 200 >"$SERVED/status"
  check
  expect_status 0
  # Every run asked GET /leaderz, once.
  expect_lines "$(printf 'GET /leaderz\n%.0s' 1 2 3 4 5 6 7)" "$(cat "$SERVED/requests")"
}

@test "a refused connection fails the check, and so does a server that does not answer within --check-timeout" {
  serve 127.0.0.1
  render_check --health-addr "127.0.0.1:$PORT" --check-timeout 1
  echo 0 >"$SERVED/status"
  started=$(date +%s%N)
  check
  elapsed_ms=$((($(date +%s%N) - started) / 1000000))
  [ "$status" -eq 1 ] || { echo "no answer: the check exited $status"; return 1; }
  # Waited for the answer about --check-timeout (1 s), not keepalived's limit or longer.
  [ "$elapsed_ms" -ge 900 ] && [ "$elapsed_ms" -lt 2500 ] || { echo "no answer: the check took $elapsed_ms ms"; return 1; }
  kill "$SERVER_PID" && wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  check
  [ "$status" -eq 1 ] || { echo "refused: the check exited $status"; return 1; }
}

@test "a wildcard --health-addr is this node's loopback; an IPv6 address reaches the server as written" {
  serve 127.0.0.1
  for addr in ":$PORT" "0.0.0.0:$PORT"; do
    render_check --health-addr "$addr"
    grep -qF "'http://127.0.0.1:$PORT/leaderz'" "$CHECK" || { echo "--health-addr $addr:"; cat "$CHECK"; return 1; }
    check
    expect_status 0
  done
  kill "$SERVER_PID" && wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  render_check --health-addr "[::]:8990"
  grep -qF "'http://[::1]:8990/leaderz'" "$CHECK"
  if ! /usr/sbin/ip -6 addr show dev lo 2>/dev/null | grep -q 'inet6 ::1/128'; then
    skip "no IPv6 loopback on this machine: the URL is checked, not fetched"
  fi
  serve ::1
  # The bracketed address in the URL reaches the server (the check passes --globoff, so curl never reads
  # the brackets as one of its URL globs).
  render_check --health-addr "[::1]:$PORT"
  check
  expect_status 0
  [ "$(cat "$SERVED/requests")" = "GET /leaderz" ]
}

@test "defaults: 127.0.0.1:8990 (create-shard-config.sh binds health on 0.0.0.0:8990) and 2 s; keepalived waits 1 s longer" {
  render_check
  expect_lines "code=\$(curl --silent --globoff --noproxy '*' --max-time 2 --output /dev/null --write-out '%{http_code}' 'http://127.0.0.1:8990/leaderz') || exit 1
[ \"\$code\" = 200 ]" "$(grep -v '^#' "$CHECK")"
  [ "$(head -n 1 "$CHECK")" = "#!/bin/sh" ]
  grep -q '^  --base-port N .*\[8990\]$' <("$DEPLOY/create-shard-config.sh" --help)
  grep -q '^  --bind-host HOST .*\[0.0.0.0\]$' <("$DEPLOY/create-shard-config.sh" --help)
  run --separate-stderr "$DEPLOY/server-with-keepalived.sh" --print-keepalived-conf --vip 10.0.0.100/24
  expect_status 0
  [[ $output == *$'    interval 2\n    timeout 3\n'* ]]
  render_check --check-timeout 5 --health-addr node-1.example.net:9990
  grep -qF -- "--max-time 5 " "$CHECK" && grep -qF "'http://node-1.example.net:9990/leaderz'" "$CHECK"
  run --separate-stderr "$DEPLOY/server-with-keepalived.sh" --print-keepalived-conf --vip 10.0.0.100/24 --check-timeout 5
  [[ $output == *$'    timeout 6\n'* ]]
}

@test "the rendered check is POSIX sh that shellcheck passes" {
  render_check --health-addr "[::1]:8990"
  run shellcheck --shell=sh "$CHECK"
  [ "$status" -eq 0 ] || { printf '%s\n' "$output"; return 1; }
  render_check
  run shellcheck --shell=sh "$CHECK"
  [ "$status" -eq 0 ] || { printf '%s\n' "$output"; return 1; }
}

@test "a bad --health-addr or --check-timeout, and the old --check-port, are usage errors (exit 2)" {
  local -a cases=(
    "--health-addr 8990|--health-addr must be HOST:PORT (IPv4, [IPv6] or a DNS name; the host may be empty), got '8990'"
    "--health-addr 127.0.0.1:0|--health-addr must be HOST:PORT (IPv4, [IPv6] or a DNS name; the host may be empty), got '127.0.0.1:0'"
    "--health-addr 127.0.0.1:65536|--health-addr must be HOST:PORT"
    "--health-addr ::1:8990|--health-addr must be HOST:PORT"
    "--health-addr h'x:8990|--health-addr must be HOST:PORT"
    "--health-addr 300.0.0.1:8990|--health-addr must be HOST:PORT"
    "--check-timeout 0|--check-timeout must be a number of seconds from 1 to 30, got '0'"
    "--check-timeout 31|--check-timeout must be a number of seconds from 1 to 30, got '31'"
    "--check-timeout 1.5|--check-timeout must be a number of seconds from 1 to 30, got '1.5'"
    "--check-port 8992|--check-port is gone: every replica listens on the registration port, so the check asks /leaderz on the health endpoint instead (--health-addr HOST:PORT, default 127.0.0.1:8990)"
  )
  for c in "${cases[@]}"; do
    read -ra args <<<"${c%%|*}"
    run --separate-stderr "$DEPLOY/server-with-keepalived.sh" --dry-run "${BASE[@]}" "${args[@]}"
    [ "$status" -eq 2 ] || { echo "args: ${args[*]} -> status $status: $stderr"; return 1; }
    [[ $stderr == "error: ${c#*|}"* ]] || { echo "args: ${args[*]} -> $stderr"; return 1; }
  done
  [ ! -s "$STUB_LOG" ]
}
