#!/usr/bin/env bats
# server-with-keepalived.sh against stub pveum/ip/id/systemctl/keepalived: the pveum sequence and its
# idempotent skips, VIP interface detection, the env file, unit and keepalived.conf, re-runs that change
# nothing, usage errors; plus the rendered keepalived.conf checked by the real `keepalived -t`.
bats_require_minimum_version 1.5.0
load helpers

PRIVS=Sys.Audit,VM.Allocate,VM.Audit,VM.Clone,VM.PowerMgmt,VM.Config.CPU,VM.Config.Memory,VM.Config.Network,VM.Config.Disk,VM.Config.CDROM,VM.Config.Options,Datastore.Audit,Datastore.Allocate,Datastore.AllocateSpace,Datastore.AllocateTemplate,SDN.Use

setup() {
  setup_stubs
  export NSTANCE_DEPLOY_ROOT=$BATS_TEST_TMPDIR/root
  R=$NSTANCE_DEPLOY_ROOT
  mkdir -p "$R/usr/local/bin" && printf '#!/bin/sh\n' >"$R/usr/local/bin/nstance-server" && chmod +x "$R/usr/local/bin/nstance-server"
  export PROXMOX_TOKEN_ID='nstance@pve!nstance-token' PROXMOX_TOKEN_SECRET=11111111-aaaa-bbbb-cccc-222222222222
  export AWS_ACCESS_KEY_ID=AKTEST AWS_SECRET_ACCESS_KEY=secretkey
  unset AWS_REGION AWS_ENDPOINT_URL AWS_S3_USE_PATH_STYLE GOOGLE_APPLICATION_CREDENTIALS PROXMOX_API_URL KEEPALIVED_AUTH_PASS
  BASE=(--shard pve-a --bucket nstance --vip 10.0.0.100/24)
}

commands() { dry_run_lines | grep -v '^\[dry-run\]   |' || true; }

# put_planned_files: write every file a dry-run showed, as if that run had been real (secrets filled in).
put_planned_files() {
  awk '
    /^\[dry-run\] write / { out = $3; system("mkdir -p \"$(dirname \"" out "\")\""); printf "" > out; next }
    /^\[dry-run\]   \| ?/ && out != "" { line = $0; sub(/^\[dry-run\]   \| ?/, "", line); print line >> out; next }
    { out = "" }' <<<"$output"
  sed -i "s/^PROXMOX_TOKEN_SECRET=<redacted>/PROXMOX_TOKEN_SECRET='$PROXMOX_TOKEN_SECRET'/; s/^AWS_SECRET_ACCESS_KEY=<redacted>/AWS_SECRET_ACCESS_KEY='$AWS_SECRET_ACCESS_KEY'/" "$R/etc/nstance/nstance-server.env"
  chmod 0600 "$R/etc/nstance/nstance-server.env"
  chmod 0755 "$R/usr/local/libexec/nstance-check-leader"
}

@test "fresh node with --create-token: pveum user, role with exactly the guide's privileges, ACL, token, then install" {
  run --separate-stderr "$DEPLOY/server-with-keepalived.sh" --dry-run --create-token "${BASE[@]}"
  expect_status 0
  expect_lines "[dry-run] pveum user add nstance@pve --comment 'nstance server (owns the API token)'
[dry-run] pveum role add NstanceServer --privs $PRIVS
[dry-run] pveum acl modify / --users nstance@pve --roles NstanceServer
[dry-run] pveum user token add nstance@pve nstance-token --privsep 0 --output-format json
[dry-run] useradd --system --user-group --no-create-home --home-dir /var/lib/nstance --shell /usr/sbin/nologin nstance
[dry-run] install -d -m 0750 -o root -g nstance $R/etc/nstance
[dry-run] write $R/etc/nstance/nstance-server.env (mode 0600):
[dry-run] write $R/etc/systemd/system/nstance-server.service (mode 0644):
[dry-run] systemctl daemon-reload
[dry-run] install -d -m 0755 $R/usr/local/libexec
[dry-run] write $R/usr/local/libexec/nstance-check-leader (mode 0755):
[dry-run] keepalived -t -f <new keepalived.conf> (syntax check before installing it)
[dry-run] write $R/etc/keepalived/keepalived.conf (mode 0644):
[dry-run] systemctl enable nstance-server.service
[dry-run] systemctl restart nstance-server.service
[dry-run] systemctl enable keepalived.service
[dry-run] systemctl restart keepalived.service" "$(commands)"
  # Only read-only probes ran; the token list is not asked for a user that does not exist yet.
  expect_lines "ip -o -4 addr show
pveum user list --output-format json
pveum role list --output-format json
pveum acl list --output-format json
id -u nstance
hostname -s" "$(stub_calls)"
  # The new token's secret would go into the env file (shown redacted), the ID in the guide's format.
  [[ $output == *"[dry-run]   | PROXMOX_TOKEN_ID='nstance@pve!nstance-token'"* ]]
  [[ $output == *"[dry-run]   | PROXMOX_TOKEN_SECRET=<redacted>"* && $output != *"$PROXMOX_TOKEN_SECRET"* ]]
  [ ! -e "$R/etc" ]
}

@test "the privileges are exactly the sixteen the integration guide's permissions table lists" {
  # The guide's table, one privilege a line (kept here so the repository stands alone).
  from_guide="Datastore.Allocate
Datastore.AllocateSpace
Datastore.AllocateTemplate
Datastore.Audit
SDN.Use
Sys.Audit
VM.Allocate
VM.Audit
VM.Clone
VM.Config.CDROM
VM.Config.CPU
VM.Config.Disk
VM.Config.Memory
VM.Config.Network
VM.Config.Options
VM.PowerMgmt"
  from_script=$(grep '^PVE_PRIVS=' "$DEPLOY/server-with-keepalived.sh" | cut -d= -f2 | tr ',' '\n' | sort)
  [ "$(wc -l <<<"$from_guide")" -eq 16 ]
  expect_lines "$from_guide" "$(sort <<<"$from_script")"
}

@test "existing user, role, ACL and token are skipped; the token's secret comes from the environment" {
  echo '[{"enable":1,"userid":"root@pam"},{"enable":1,"userid":"nstance@pve","comment":"x"}]' >"$STUB_STATE/pveum-users.json"
  echo "[{\"privs\":\"VM.Audit\",\"roleid\":\"PVEAuditor\",\"special\":1},{\"privs\":\"$(tr ',' '\n' <<<"$PRIVS" | sort -r | paste -sd, -)\",\"roleid\":\"NstanceServer\",\"special\":0}]" >"$STUB_STATE/pveum-roles.json"
  echo '[{"path":"/","propagate":1,"roleid":"NstanceServer","type":"user","ugid":"nstance@pve"}]' >"$STUB_STATE/pveum-acl.json"
  echo '[{"comment":"","expire":0,"privsep":0,"tokenid":"nstance-token"}]' >"$STUB_STATE/pveum-tokens.json"
  run --separate-stderr "$DEPLOY/server-with-keepalived.sh" --dry-run --create-token "${BASE[@]}"
  expect_status 0
  ! grep -q '^\[dry-run\] pveum' <<<"$output"
  [[ $stderr == *"PVE user nstance@pve exists"* && $stderr == *"role NstanceServer exists with the right privileges"* ]]
  [[ $stderr == *"ACL NstanceServer for nstance@pve on / exists"* && $stderr == *"API token nstance@pve!nstance-token exists"* ]]
  grep -qx 'pveum user token list nstance@pve --output-format json' "$STUB_LOG"
  # Without a known secret the script stops and says how to proceed.
  unset PROXMOX_TOKEN_SECRET
  run --separate-stderr "$DEPLOY/server-with-keepalived.sh" --dry-run --create-token "${BASE[@]}"
  expect_status 1
  [[ $stderr == *"error: PROXMOX_TOKEN_SECRET is not set (environment or existing $R/etc/nstance/nstance-server.env)"*"pveum user token remove nstance@pve nstance-token"* ]]
}

@test "an existing role with other privileges is modified, not recreated" {
  echo '[{"privs":"VM.Audit,Sys.Audit","roleid":"NstanceServer","special":0}]' >"$STUB_STATE/pveum-roles.json"
  run --separate-stderr "$DEPLOY/server-with-keepalived.sh" --dry-run --token-only
  expect_status 0
  expect_lines "[dry-run] pveum user add nstance@pve --comment 'nstance server (owns the API token)'
[dry-run] pveum role modify NstanceServer --privs $PRIVS
[dry-run] pveum acl modify / --users nstance@pve --roles NstanceServer
[dry-run] pveum user token add nstance@pve nstance-token --privsep 0 --output-format json
PROXMOX_TOKEN_ID='nstance@pve!nstance-token'
PROXMOX_TOKEN_SECRET='<new token secret>'" "$output"
}

@test "a real --token-only run creates the token and prints its secret once" {
  run --separate-stderr "$DEPLOY/server-with-keepalived.sh" --token-only
  expect_status 0
  expect_lines "PROXMOX_TOKEN_ID='nstance@pve!nstance-token'
PROXMOX_TOKEN_SECRET='11111111-2222-3333-4444-555555555555'" "$output"
  expect_lines "pveum user list --output-format json
pveum user add nstance@pve --comment nstance server (owns the API token)
pveum role list --output-format json
pveum role add NstanceServer --privs $PRIVS
pveum acl list --output-format json
pveum acl modify / --users nstance@pve --roles NstanceServer
pveum user token add nstance@pve nstance-token --privsep 0 --output-format json" "$(grep -v '^id -u$' "$STUB_LOG")"
}

@test "the env file holds settings and credentials, and S3 endpoint settings when given" {
  run --separate-stderr "$DEPLOY/server-with-keepalived.sh" --dry-run "${BASE[@]}" --id node-1 --prefix team1/ \
    --s3-endpoint http://10.0.0.5:8333 --region eu-west-1 --proxmox-api-url https://10.0.0.2:8006/api2/json
  expect_status 0
  expect_lines "[dry-run] write $R/etc/nstance/nstance-server.env (mode 0600):
[dry-run]   | # Written by nstance's server-with-keepalived.sh; read by nstance-server.service. Holds secrets: mode 0600.
[dry-run]   | NSTANCE_STORAGE='s3'
[dry-run]   | NSTANCE_BUCKET='nstance'
[dry-run]   | NSTANCE_SHARD='pve-a'
[dry-run]   | NSTANCE_ID='node-1'
[dry-run]   | NSTANCE_EXTRA_ARGS='--prefix team1/'
[dry-run]   | NSTANCE_KEY_ARGS=''
[dry-run]   | PROXMOX_API_URL='https://10.0.0.2:8006/api2/json'
[dry-run]   | PROXMOX_TOKEN_ID='nstance@pve!nstance-token'
[dry-run]   | PROXMOX_TOKEN_SECRET=<redacted>
[dry-run]   | AWS_REGION='eu-west-1'
[dry-run]   | AWS_ACCESS_KEY_ID='AKTEST'
[dry-run]   | AWS_SECRET_ACCESS_KEY=<redacted>
[dry-run]   | AWS_ENDPOINT_URL='http://10.0.0.5:8333'
[dry-run]   | AWS_S3_USE_PATH_STYLE='true'" "$(dry_run_lines | sed -n '/write .*nstance-server.env/,/AWS_S3_USE_PATH_STYLE/p')"
}

@test "the unit the script installs is deploy/systemd/nstance-server.service, byte for byte" {
  run --separate-stderr "$DEPLOY/server-with-keepalived.sh" --dry-run "${BASE[@]}"
  expect_status 0
  diff <(dry_run_lines | awk '/^\[dry-run\] write .*nstance-server.service/ { on = 1; next } /^\[dry-run\] [^ ]/ { on = 0 } on' | sed -E 's/^\[dry-run\]   \| ?//') \
    "$REPO/deploy/systemd/nstance-server.service"
}

@test "a re-run on a configured node rewrites nothing and only makes sure the services run" {
  run --separate-stderr "$DEPLOY/server-with-keepalived.sh" --dry-run "${BASE[@]}"
  expect_status 0
  put_planned_files
  touch "$STUB_STATE/user-nstance"
  # Secrets are not repeated: they are kept from the env file.
  unset PROXMOX_TOKEN_ID PROXMOX_TOKEN_SECRET AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
  run --separate-stderr "$DEPLOY/server-with-keepalived.sh" --dry-run "${BASE[@]}"
  expect_status 0
  expect_lines "[dry-run] install -d -m 0750 -o root -g nstance $R/etc/nstance
[dry-run] install -d -m 0755 $R/usr/local/libexec
[dry-run] keepalived -t -f <new keepalived.conf> (syntax check before installing it)
[dry-run] systemctl enable nstance-server.service
[dry-run] systemctl start nstance-server.service
[dry-run] systemctl enable keepalived.service
[dry-run] systemctl start keepalived.service" "$(commands)"
  for f in etc/nstance/nstance-server.env etc/systemd/system/nstance-server.service etc/keepalived/keepalived.conf usr/local/libexec/nstance-check-leader; do
    [[ $stderr == *"unchanged: $R/$f"* ]] || { echo "not unchanged: $f"; return 1; }
  done
  [[ $stderr == *"system user nstance exists"* ]]
}

@test "the VIP's interface is the one whose subnet holds it (longest prefix wins)" {
  run --separate-stderr "$DEPLOY/server-with-keepalived.sh" --print-keepalived-conf --vip 192.168.1.200/24
  expect_status 0
  [[ $output == *"    interface vmbr0"$'\n'* && $output == *"192.168.1.200/24 dev vmbr0"* ]]
  printf '%s\n' '2: vmbr0    inet 10.0.0.5/16 brd 10.0.255.255 scope global vmbr0\' \
    '7: vmbr0.20@vmbr0    inet 10.0.1.5/24 brd 10.0.1.255 scope global vmbr0.20\' >"$STUB_STATE/ip-addr"
  run --separate-stderr "$DEPLOY/server-with-keepalived.sh" --print-keepalived-conf --vip 10.0.1.100/24
  expect_status 0
  [[ $output == *"    interface vmbr0.20"$'\n'* ]]
  [[ $stderr == *"VIP 10.0.1.100/24 belongs on interface vmbr0.20"* ]]
  run --separate-stderr "$DEPLOY/server-with-keepalived.sh" --print-keepalived-conf --vip 10.0.7.100/24
  [[ $output == *"    interface vmbr0"$'\n'* ]]
}

@test "no matching interface, or two equally good ones, is an error asking for --interface" {
  run --separate-stderr "$DEPLOY/server-with-keepalived.sh" --print-keepalived-conf --vip 172.16.0.10/24
  expect_status 1
  [ "$stderr" = "error: no interface has an IPv4 address in the subnet of --vip 172.16.0.10/24; give --interface" ]
  printf '%s\n' '2: vmbr0    inet 10.0.0.5/24 scope global vmbr0\' '3: vmbr1    inet 10.0.0.6/24 scope global vmbr1\' >"$STUB_STATE/ip-addr"
  run --separate-stderr "$DEPLOY/server-with-keepalived.sh" --print-keepalived-conf --vip 10.0.0.100/24
  expect_status 1
  [ "$stderr" = "error: several interfaces hold the subnet of --vip 10.0.0.100/24 (vmbr0 vmbr1); give --interface" ]
  run --separate-stderr "$DEPLOY/server-with-keepalived.sh" --print-keepalived-conf --vip 10.0.0.100/24 --interface vmbr1
  expect_status 0
  [[ $output == *"10.0.0.100/24 dev vmbr1"* ]]
  run --separate-stderr "$DEPLOY/server-with-keepalived.sh" --print-keepalived-conf --vip 10.0.0.100/24 --interface vmbr9
  expect_status 1
  [ "$stderr" = "error: --interface vmbr9 does not exist on this node" ]
}

@test "the rendered keepalived.conf passes the real keepalived -t" {
  command -v /usr/sbin/keepalived >/dev/null || skip "keepalived is not installed (apt-get install keepalived)"
  [ "$(/usr/bin/id -u)" = 0 ] || skip "keepalived -t with script security needs root-owned check scripts (run as root)"
  real_if=$(/usr/sbin/ip -o -4 addr show 2>/dev/null | awk '$2 != "lo" { print $2, $4; exit }')
  [ -n "$real_if" ] || skip "no non-loopback IPv4 interface to put a VIP on"
  iface=${real_if%% *} cidr=${real_if#* }
  vip="$(cut -d. -f1-3 <<<"${cidr%/*}").250/${cidr#*/}"
  check=$BATS_TEST_TMPDIR/libexec/check-leader
  mkdir -p "${check%/*}" && chmod 0755 "${check%/*}" && printf '#!/bin/sh\nexit 0\n' >"$check" && chmod 0755 "$check"
  export PATH="$STUB_BIN:/usr/bin:/bin:/usr/sbin"
  remove_stub ip
  # keepalived 2.2's config test ends itself with SIGTERM when script_user is unprivileged; the script
  # checks a copy with root as script_user the same way before installing.
  run --separate-stderr "$DEPLOY/server-with-keepalived.sh" --print-keepalived-conf --vip "$vip" --vrid 77 --priority 150 \
    --auth-pass s3cret --check-script "$check" --script-user root
  expect_status 0
  [[ $output == *"    interface $iface"$'\n'* && $output == *"auth_pass s3cret"* && $output == *"virtual_router_id 77"* ]]
  printf '%s\n' "$output" >"$BATS_TEST_TMPDIR/keepalived.conf"
  run /usr/sbin/keepalived -t -f "$BATS_TEST_TMPDIR/keepalived.conf"
  [ "$status" -eq 0 ] || { echo "keepalived -t exit $status: $output"; cat "$BATS_TEST_TMPDIR/keepalived.conf"; return 1; }
  # And a broken one is rejected (so the check above means something).
  sed 's/virtual_router_id 77/virtual_router_id 300/' "$BATS_TEST_TMPDIR/keepalived.conf" >"$BATS_TEST_TMPDIR/bad.conf"
  run /usr/sbin/keepalived -t -f "$BATS_TEST_TMPDIR/bad.conf"
  [ "$status" -ne 0 ]
}

@test "non-root without --dry-run stops before any change" {
  export STUB_UID=1000
  run --separate-stderr "$DEPLOY/server-with-keepalived.sh" "${BASE[@]}"
  expect_status 1
  [ "$stderr" = "error: must run as root (use --dry-run to preview without root)" ]
  [ "$(stub_calls)" = "id -u" ]
}

@test "bad flags are usage errors (exit 2) with exact messages" {
  local -a cases=(
    "--shard pve-a --bucket b --vip 10.0.0.100|--vip must be an IPv4 CIDR like 10.0.0.100/24, got '10.0.0.100'"
    "--shard pve-a --bucket b --vip 10.0.0.300/24|--vip must be an IPv4 CIDR like 10.0.0.100/24, got '10.0.0.300/24'"
    "--shard pve-a --bucket b --vip 10.0.0.1/33|--vip must be an IPv4 CIDR like 10.0.0.100/24, got '10.0.0.1/33'"
    "--shard pve-a --bucket b|--vip is required (or --no-keepalived)"
    "--bucket b --vip 10.0.0.1/24|--shard is required"
    "--shard pve-a --vip 10.0.0.1/24|--bucket is required"
    "--shard pve-a --bucket b --vip 10.0.0.1/24 --vrid 0|--vrid must be a number from 1 to 255, got '0'"
    "--shard pve-a --bucket b --vip 10.0.0.1/24 --vrid 256|--vrid must be a number from 1 to 255, got '256'"
    "--shard pve-a --bucket b --vip 10.0.0.1/24 --priority 255|--priority must be a number from 1 to 254, got '255'"
    "--shard pve-a --bucket b --vip 10.0.0.1/24 --auth-pass toolongpw|--auth-pass must be 1-8 letters or digits"
    "--shard pve-a --bucket b --vip 10.0.0.1/24 --storage ftp|--storage must be s3, gcs or file, got 'ftp'"
    "--shard PVE --bucket b --vip 10.0.0.1/24|--shard must be lowercase letters and digits"
    "--shard pve-a --bucket b --vip 10.0.0.1/24 --server-bin /nonexistent|--server-bin /nonexistent is not an executable file or an nstance checkout"
    "--shard pve-a --bucket b --vip 10.0.0.1/24 --encryption-key /nonexistent|--encryption-key /nonexistent does not exist"
    "--shard pve-a --bucket b --no-keepalived --s3-endpoint ftp://x|--s3-endpoint must be an http(s) URL"
    "--vip|--vip needs a value"
  )
  for c in "${cases[@]}"; do
    read -ra args <<<"${c%%|*}"
    run --separate-stderr "$DEPLOY/server-with-keepalived.sh" --dry-run "${args[@]}"
    [ "$status" -eq 2 ] || { echo "args: ${args[*]} -> status $status: $stderr"; return 1; }
    [[ $stderr == "error: ${c#*|}"* ]] || { echo "args: ${args[*]} -> $stderr"; return 1; }
  done
  [ ! -s "$STUB_LOG" ]
}

@test "a token ID in the wrong format and quotes in values are refused before writing" {
  export PROXMOX_TOKEN_ID=nstance-token
  run --separate-stderr "$DEPLOY/server-with-keepalived.sh" --dry-run "${BASE[@]}"
  expect_status 1
  [[ $stderr == *"error: PROXMOX_TOKEN_ID must look like user@realm!tokenname, got 'nstance-token'" ]]
  export PROXMOX_TOKEN_ID='nstance@pve!nstance-token' AWS_SECRET_ACCESS_KEY="it's"
  run --separate-stderr "$DEPLOY/server-with-keepalived.sh" --dry-run "${BASE[@]}"
  expect_status 1
  [[ $stderr == *"error: the value of AWS_SECRET_ACCESS_KEY contains a quote, backslash or newline, which the env file cannot hold" ]]
}

@test "a real run (under NSTANCE_DEPLOY_ROOT) writes every file with its mode, then a re-run restarts nothing" {
  # install(1) without -o/-g: the test machine has no nstance group; everything else is the real install.
  cat >"$STUB_BIN/install" <<'SH'
#!/usr/bin/env bash
printf '%s\n' "install $*" >>"$STUB_LOG"
args=()
while [ $# -gt 0 ]; do case $1 in -o | -g) shift 2 ;; *) args+=("$1"); shift ;; esac; done
exec /usr/bin/install "${args[@]}"
SH
  chmod +x "$STUB_BIN/install"
  printf '#!/bin/sh\necho nstance-server\n' >"$BATS_TEST_TMPDIR/nstance-server-build" && chmod +x "$BATS_TEST_TMPDIR/nstance-server-build"
  rm -f "$R/usr/local/bin/nstance-server"
  export KEEPALIVED_AUTH_PASS=pw123
  run --separate-stderr "$DEPLOY/server-with-keepalived.sh" "${BASE[@]}" --server-bin "$BATS_TEST_TMPDIR/nstance-server-build" \
    --generate-encryption-key --s3-endpoint http://10.0.0.5:8333
  expect_status 0
  [ "$(stat -c %a "$R/etc/nstance/nstance-server.env")" = 600 ]
  grep -qx "PROXMOX_TOKEN_SECRET='$PROXMOX_TOKEN_SECRET'" "$R/etc/nstance/nstance-server.env"
  grep -qx "AWS_ENDPOINT_URL='http://10.0.0.5:8333'" "$R/etc/nstance/nstance-server.env"
  cmp "$R/etc/systemd/system/nstance-server.service" "$REPO/deploy/systemd/nstance-server.service"
  [ "$(stat -c %a "$R/etc/systemd/system/nstance-server.service")" = 644 ]
  [ "$(stat -c %a "$R/usr/local/libexec/nstance-check-leader")" = 755 ]
  cmp "$R/usr/local/bin/nstance-server" "$BATS_TEST_TMPDIR/nstance-server-build"
  [ "$(stat -c %a "$R/etc/nstance/encryption.key")" = 640 ] && [ "$(tr -d '\n' <"$R/etc/nstance/encryption.key" | wc -c)" -eq 32 ]
  # The unit hands the key to the server (registration and the operator endpoint need it) ...
  grep -qx "NSTANCE_KEY_ARGS='--encryption-key-file /etc/nstance/encryption.key'" "$R/etc/nstance/nstance-server.env"
  grep -q ' \$NSTANCE_KEY_ARGS \$NSTANCE_EXTRA_ARGS$' "$R/etc/systemd/system/nstance-server.service"
  # (that the server takes the generated key as it is: test/agent/pki.test.ts)
  grep -q '^        auth_pass pw123$' "$R/etc/keepalived/keepalived.conf"
  # keepalived checked a copy (script_user root) before the real file was written; no temp files remain.
  grep -q '^keepalived -t -f ' "$STUB_LOG"
  [ "$(find "$R" -name '.*' -type f | wc -l)" -eq 0 ]
  expect_lines "systemctl daemon-reload
systemctl enable nstance-server.service
systemctl restart nstance-server.service
systemctl enable keepalived.service
systemctl restart keepalived.service" "$(grep '^systemctl' "$STUB_LOG")"
  # Second run, secrets no longer in the environment: nothing changes, services are only started.
  : >"$STUB_LOG"
  touch "$STUB_STATE/user-nstance"
  unset PROXMOX_TOKEN_ID PROXMOX_TOKEN_SECRET AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
  key_before=$(cat "$R/etc/nstance/encryption.key")
  run --separate-stderr "$DEPLOY/server-with-keepalived.sh" "${BASE[@]}" --server-bin "$BATS_TEST_TMPDIR/nstance-server-build" \
    --generate-encryption-key --s3-endpoint http://10.0.0.5:8333
  expect_status 0
  [ "$(cat "$R/etc/nstance/encryption.key")" = "$key_before" ]
  grep -qx "PROXMOX_TOKEN_SECRET='11111111-aaaa-bbbb-cccc-222222222222'" "$R/etc/nstance/nstance-server.env"
  expect_lines "systemctl enable nstance-server.service
systemctl start nstance-server.service
systemctl enable keepalived.service
systemctl start keepalived.service" "$(grep '^systemctl' "$STUB_LOG")"
  ! grep -q '^useradd' "$STUB_LOG"
}

@test "uninstall stops and removes the unit, our keepalived.conf and the check script, and keeps secrets" {
  mkdir -p "$R/etc/systemd/system" "$R/etc/keepalived" "$R/usr/local/libexec" "$R/etc/nstance"
  touch "$R/etc/systemd/system/nstance-server.service" "$R/usr/local/libexec/nstance-check-leader" "$R/etc/nstance/nstance-server.env"
  echo "# Written by nstance's server-with-keepalived.sh." >"$R/etc/keepalived/keepalived.conf"
  touch "$STUB_STATE/is-active-nstance-server.service" "$STUB_STATE/is-enabled-nstance-server.service" "$STUB_STATE/is-enabled-keepalived.service"
  run --separate-stderr "$DEPLOY/server-with-keepalived.sh" --dry-run --uninstall
  expect_status 0
  expect_lines "[dry-run] systemctl stop nstance-server.service
[dry-run] systemctl disable nstance-server.service
[dry-run] systemctl disable keepalived.service
[dry-run] rm -f $R/etc/systemd/system/nstance-server.service
[dry-run] systemctl daemon-reload
[dry-run] rm -f $R/etc/keepalived/keepalived.conf
[dry-run] rm -f $R/usr/local/libexec/nstance-check-leader" "$output"
  [[ $stderr == *"kept $R/etc/nstance/nstance-server.env"* ]]
  # A keepalived.conf someone else wrote is left alone, and so is keepalived.
  echo "vrrp_instance OTHER {}" >"$R/etc/keepalived/keepalived.conf"
  run --separate-stderr "$DEPLOY/server-with-keepalived.sh" --dry-run --uninstall
  ! grep -q keepalived <<<"$output"
}
