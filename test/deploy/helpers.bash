# Shared setup for the deploy script tests: every test gets its own stub bin directory (symlinks to
# test/deploy/stubs, so a test can delete one to simulate a missing tool), a stub call log and a state
# directory the stubs answer from. PATH holds only the stubs and /usr/bin:/bin, so /usr/sbin tools that
# happen to be installed on the test machine (keepalived, useradd) are only reachable through stubs.

REPO=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
DEPLOY=$REPO/deploy/proxmox

setup_stubs() {
  STUB_BIN=$BATS_TEST_TMPDIR/bin
  export STUB_LOG=$BATS_TEST_TMPDIR/calls.log
  export STUB_STATE=$BATS_TEST_TMPDIR/state
  mkdir -p "$STUB_BIN" "$STUB_STATE"
  : >"$STUB_LOG"
  local s
  for s in "$BATS_TEST_DIRNAME"/stubs/*; do ln -s "$s" "$STUB_BIN/${s##*/}"; done
  export PATH="$STUB_BIN:/usr/bin:/bin"
  unset STUB_FAIL STUB_UID STUB_VALIDATE_FAIL
}

remove_stub() { rm -f "$STUB_BIN/$1"; }

# expect_lines EXPECTED ACTUAL: exact comparison with a readable diff on failure.
expect_lines() {
  if [ "$1" != "$2" ]; then
    echo "--- expected / +++ actual"
    diff <(printf '%s\n' "$1") <(printf '%s\n' "$2") || true
    return 1
  fi
}

# dry_run_lines: the "[dry-run] " lines of $output (the plan), in order.
dry_run_lines() { printf '%s\n' "$output" | grep '^\[dry-run\]' || true; }

stub_calls() { cat "$STUB_LOG"; }

# expect_status N: like [ "$status" -eq N ] but shows the output when it fails.
expect_status() {
  if [ "$status" -ne "$1" ]; then
    echo "expected exit status $1, got $status; output:"
    printf '%s\n' "$output"
    [ -z "${stderr-}" ] || printf 'stderr:\n%s\n' "$stderr"
    return 1
  fi
}
