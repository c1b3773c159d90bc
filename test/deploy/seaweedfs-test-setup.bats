#!/usr/bin/env bats
# seaweedfs-test-setup.sh against stubs: install/skip of weed, S3 identities, unit, bucket creation,
# key reuse on re-runs, the printed exports, uninstall, and usage errors.
bats_require_minimum_version 1.5.0
load helpers

setup() {
  setup_stubs
  export NSTANCE_DEPLOY_ROOT=$BATS_TEST_TMPDIR/root
  mkdir -p "$NSTANCE_DEPLOY_ROOT/etc/systemd/system"
  BIN=$BATS_TEST_TMPDIR/bin-install CONF=$BATS_TEST_TMPDIR/etc-seaweedfs DATA=$BATS_TEST_TMPDIR/data
  UNIT=$NSTANCE_DEPLOY_ROOT/etc/systemd/system/seaweedfs.service
  TARBALL=$BATS_TEST_TMPDIR/linux_amd64_full.tar.gz
  : >"$TARBALL"
  COMMON=(--install-dir "$BIN" --config-dir "$CONF" --dir "$DATA")
}

# commands: the plan without the file contents shown under "write".
commands() { dry_run_lines | grep -v '^\[dry-run\]   |' || true; }

@test "fresh dry-run: install from a tarball, write config and unit, start, create the bucket" {
  run --separate-stderr "$DEPLOY/seaweedfs-test-setup.sh" --dry-run "${COMMON[@]}" --weed-path "$TARBALL"
  expect_status 0
  expect_lines "[dry-run] tar -xzf $TARBALL -C /tmp/seaweedfs-install.XXXXXX weed
[dry-run] install -m 0755 /tmp/seaweedfs-install.XXXXXX/weed $BIN/weed
[dry-run] mkdir -p $DATA
[dry-run] install -d -m 0700 $CONF
[dry-run] write $CONF/s3.json (mode 0600):
[dry-run] write $UNIT (mode 0644):
[dry-run] systemctl daemon-reload
[dry-run] systemctl enable seaweedfs.service
[dry-run] systemctl restart seaweedfs.service
[dry-run] wait until http://127.0.0.1:8333 answers
[dry-run] curl -fsS -X PUT --aws-sigv4 aws:amz:us-east-1:s3 -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -K - http://127.0.0.1:8333/nstance (credentials on stdin)" "$(commands)"
  [[ $output == *"[dry-run]   | ExecStart=$BIN/weed server -dir=$DATA -s3 -s3.port=8333 -s3.config=$CONF/s3.json"* ]]
  [[ $output == *'"secretKey": "<redacted>"'* ]]
  [[ $output == *"export AWS_ENDPOINT_URL=http://192.168.1.10:8333"* && $output == *"export AWS_S3_USE_PATH_STYLE=true"* ]]
  [ ! -e "$BIN" ] && [ ! -e "$CONF" ] && [ ! -e "$UNIT" ]
}

@test "the default download URL follows --version and the machine's architecture" {
  run --separate-stderr "$DEPLOY/seaweedfs-test-setup.sh" --dry-run "${COMMON[@]}" --version 3.80
  expect_status 0
  case $(uname -m) in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) skip "no release for $(uname -m)" ;; esac
  [ "$(commands | head -n 1)" = "[dry-run] curl -fSL --retry 3 -o /tmp/seaweedfs-install.XXXXXX/linux_${arch}_full.tar.gz https://github.com/seaweedfs/seaweedfs/releases/download/3.80/linux_${arch}_full.tar.gz" ]
}

@test "an installed weed is kept; a plain binary URL is installed without tar" {
  mkdir -p "$BIN" && printf '#!/bin/sh\n' >"$BIN/weed" && chmod +x "$BIN/weed"
  run --separate-stderr "$DEPLOY/seaweedfs-test-setup.sh" --dry-run "${COMMON[@]}"
  expect_status 0
  [[ $stderr == *"weed already installed at $BIN/weed"* ]]
  ! grep -q -e '^\[dry-run\] \(curl -fSL\|tar\|install -m 0755\)' <<<"$output"
  run --separate-stderr "$DEPLOY/seaweedfs-test-setup.sh" --dry-run "${COMMON[@]}" --force-install --weed-url https://example.test/weed
  expect_status 0
  expect_lines "[dry-run] curl -fSL --retry 3 -o /tmp/seaweedfs-install.XXXXXX/weed https://example.test/weed
[dry-run] install -m 0755 /tmp/seaweedfs-install.XXXXXX/weed $BIN/weed" "$(commands | head -n 2)"
}

# put_planned_files: write the s3.json and unit a dry-run showed (with the real secret) into place, as
# if that run had been real.
put_planned_files() {
  mkdir -p "$CONF"
  awk -v f="$CONF/s3.json" -v u="$UNIT" '
    /^\[dry-run\] write / { out = ($3 == f || $3 == u) ? $3 : ""; next }
    /^\[dry-run\]   \| ?/ && out != "" { line = $0; sub(/^\[dry-run\]   \| ?/, "", line); print line > out; next }
    { out = "" }' <<<"$output"
  sed -i 's/"secretKey": "<redacted>"/"secretKey": "secretsecretsecret01"/' "$CONF/s3.json"
  chmod 0600 "$CONF/s3.json"
}

@test "a re-run with everything in place changes nothing, keeps the keys and finds the bucket" {
  mkdir -p "$BIN" && printf '#!/bin/sh\n' >"$BIN/weed" && chmod +x "$BIN/weed"
  run --separate-stderr "$DEPLOY/seaweedfs-test-setup.sh" --dry-run "${COMMON[@]}" --access-key AKEXAMPLE0001 --secret-key secretsecretsecret01
  expect_status 0
  put_planned_files
  touch "$STUB_STATE/is-active-seaweedfs.service"
  printf 200 >"$STUB_STATE/http-code"
  : >"$STUB_LOG"
  # Second pass without keys: they come from s3.json, nothing is rewritten, the bucket is found.
  run --separate-stderr "$DEPLOY/seaweedfs-test-setup.sh" --dry-run "${COMMON[@]}"
  expect_status 0
  expect_lines "[dry-run] mkdir -p $DATA
[dry-run] install -d -m 0700 $CONF
[dry-run] systemctl enable seaweedfs.service
[dry-run] systemctl start seaweedfs.service" "$(commands)"
  [[ $stderr == *"unchanged: $CONF/s3.json"* && $stderr == *"unchanged: $UNIT"* && $stderr == *"bucket 'nstance' already exists"* ]]
  [[ $output == *"export AWS_ACCESS_KEY_ID=AKEXAMPLE0001"* && $output == *"export AWS_SECRET_ACCESS_KEY=secretsecretsecret01"* ]]
  grep -q -- "-I http://127.0.0.1:8333/nstance" "$STUB_LOG"
}

@test "a missing bucket on a running, unchanged server is planned for creation" {
  mkdir -p "$BIN" && printf '#!/bin/sh\n' >"$BIN/weed" && chmod +x "$BIN/weed"
  run --separate-stderr "$DEPLOY/seaweedfs-test-setup.sh" --dry-run "${COMMON[@]}" --access-key AKEXAMPLE0001 --secret-key secretsecretsecret01
  put_planned_files
  touch "$STUB_STATE/is-active-seaweedfs.service"
  printf 404 >"$STUB_STATE/http-code"
  run --separate-stderr "$DEPLOY/seaweedfs-test-setup.sh" --dry-run "${COMMON[@]}"
  expect_status 0
  [[ $stderr == *"unchanged: $UNIT"* ]]
  [ "$(commands | tail -n 1)" = "[dry-run] curl -fsS -X PUT --aws-sigv4 aws:amz:us-east-1:s3 -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -K - http://127.0.0.1:8333/nstance (credentials on stdin)" ]
}

@test "--bind goes into the unit and the printed endpoint" {
  run --separate-stderr "$DEPLOY/seaweedfs-test-setup.sh" --dry-run "${COMMON[@]}" --weed-path "$TARBALL" --bind 10.0.0.5 --port 9000 --bucket tests
  expect_status 0
  [[ $output == *"-s3.port=9000 -s3.config=$CONF/s3.json -ip=10.0.0.5 -ip.bind=10.0.0.5"* ]]
  [[ $output == *"export AWS_ENDPOINT_URL=http://10.0.0.5:9000"* ]]
  [[ $output == *"http://10.0.0.5:9000/tests (credentials on stdin)"* ]]
}

@test "uninstall stops and removes only what exists; --purge also removes data and binary" {
  mkdir -p "$BIN" "$DATA" "$CONF" && touch "$BIN/weed" "$UNIT" "$CONF/s3.json"
  touch "$STUB_STATE/is-active-seaweedfs.service" "$STUB_STATE/is-enabled-seaweedfs.service"
  run --separate-stderr "$DEPLOY/seaweedfs-test-setup.sh" --dry-run "${COMMON[@]}" --uninstall --purge
  expect_status 0
  expect_lines "[dry-run] systemctl stop seaweedfs.service
[dry-run] systemctl disable seaweedfs.service
[dry-run] rm -f $UNIT
[dry-run] systemctl daemon-reload
[dry-run] rm -f $CONF/s3.json
[dry-run] rm -rf $DATA
[dry-run] rm -f $BIN/weed" "$output"
  [ -e "$UNIT" ] && [ -e "$BIN/weed" ]
}

@test "bad flags are usage errors (exit 2)" {
  local -a cases=(
    "--bucket Bad_Bucket|--bucket must be 3-63 lowercase letters"
    "--port 70000|--port must be a port number, got '70000'"
    "--bind 10.0.0|--bind must be an IPv4 address, got '10.0.0'"
    "--bind 10.0.0.256|--bind must be an IPv4 address"
    "--weed-url https://a/b --weed-path /x|give either --weed-url or --weed-path, not both"
    "--purge|--purge only makes sense with --uninstall"
    "--access-key short|--access-key must be 8-128 letters or digits"
    "--dir relative|directories must be absolute paths without spaces"
    "--version 1;rm|--version must look like 3.80 or latest"
  )
  for c in "${cases[@]}"; do
    read -ra args <<<"${c%%|*}"
    run --separate-stderr "$DEPLOY/seaweedfs-test-setup.sh" --dry-run "${args[@]}"
    [ "$status" -eq 2 ] || { echo "args: ${args[*]} -> status $status: $stderr"; return 1; }
    [[ $stderr == "error: ${c#*|}"* ]] || { echo "args: ${args[*]} -> $stderr"; return 1; }
  done
}
