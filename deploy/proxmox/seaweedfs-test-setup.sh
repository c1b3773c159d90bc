#!/usr/bin/env bash
# seaweedfs-test-setup.sh: a single-node SeaweedFS with an S3 endpoint, one bucket and one access key,
# as object storage for trying nstance out. DEV/TEST ONLY: one process, no replication, data on one disk.
# For production use SeaweedFS with etcd, Ceph RGW, S3 or GCS (see the Proxmox integration guide).
#
# Usage: seaweedfs-test-setup.sh [options]
#
# Run as root on one PVE node. It installs the `weed` binary (skipped when already installed), writes
# the S3 identities file (/etc/seaweedfs/s3.json, mode 0600) and a systemd unit (seaweedfs.service),
# starts it, creates the bucket if missing and prints the AWS_* exports to give nstance-server and
# nstance-admin. Re-running keeps the existing access key unless new keys are given.
# Besides the S3 port, `weed server` also listens on 9333, 19333 (master), 8080 (volume) and 8888,
# 18888 (filer); use --bind to keep them off public interfaces.
#
# Options:
#   --weed-url URL        where to download weed from: a release tarball (*.tar.gz/*.tgz containing
#                         `weed`) or the binary itself
#                         [https://github.com/seaweedfs/seaweedfs/releases/latest/download/linux_<arch>_full.tar.gz]
#   --weed-path FILE      use a local tarball or binary instead of downloading
#   --version VER         release tag for the default URL, e.g. 3.80                  [latest]
#   --force-install       (re)install weed even if --install-dir/weed exists
#   --install-dir DIR     where weed is installed                                      [/usr/local/bin]
#   --dir DIR             data directory                                               [/var/lib/seaweedfs]
#   --config-dir DIR      where s3.json is written                                     [/etc/seaweedfs]
#   --port N              S3 port                                                      [8333]
#   --bind IP             listen address for all SeaweedFS ports                       [all addresses]
#   --bucket NAME         bucket to create                                             [nstance]
#   --access-key KEY      S3 access key (env SEAWEEDFS_ACCESS_KEY)   [kept from s3.json, else generated]
#   --secret-key KEY      S3 secret key (env SEAWEEDFS_SECRET_KEY; prefer the env var: flags show in ps)
#   --region NAME         region printed in the exports and used for request signing  [us-east-1]
#   --endpoint-host HOST  host printed in AWS_ENDPOINT_URL     [--bind, else this node's first IPv4]
#   --uninstall           stop and remove the service, unit and s3.json (data and binary are kept)
#   --purge               with --uninstall: also delete the data directory and the weed binary
#   --dry-run             print every command that would change something, one per line prefixed
#                         "[dry-run] ", and change nothing. Read-only probes (systemctl is-active,
#                         ip addr, reading s3.json) still run; root is not required.
#   -h, --help            show this help
# Environment: NSTANCE_DEPLOY_ROOT, if set, is prefixed to the systemd unit path (staging and tests only).
#
# Examples:
#   ./seaweedfs-test-setup.sh --bucket nstance
#   ./seaweedfs-test-setup.sh --weed-path /root/linux_amd64_full.tar.gz --bind 10.0.0.5 --dry-run
#
# Exit status: 0 done, 1 failure, 2 bad usage.
set -euo pipefail

LOG_TAG=seaweedfs-test-setup
DRY_RUN=0

# ---- common helpers (inlined so the script works when downloaded alone; same block in every script) ----
log() { printf '[%s] %s\n' "$LOG_TAG" "$*" >&2; }
warn() { printf '[%s] warning: %s\n' "$LOG_TAG" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
usage_error() { printf 'error: %s\n(run %s --help for usage)\n' "$*" "${0##*/}" >&2; exit 2; }
show_help() { awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "${BASH_SOURCE[0]}"; }
# quote_cmd renders argv so that the printed line can be pasted back into a shell.
quote_cmd() {
  local out="" a q="'"
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then out+=" $a"; else out+=" '${a//$q/$q\\$q$q}'"; fi
  done
  printf '%s' "${out# }"
}
run() {
  if [ "$DRY_RUN" = 1 ]; then printf '[dry-run] %s\n' "$(quote_cmd "$@")"; return 0; fi
  log "+ $(quote_cmd "$@")"
  "$@"
}
require_cmd() {
  local c
  for c in "$@"; do command -v "$c" >/dev/null 2>&1 || die "required command '$c' not found on PATH"; done
}
require_root() {
  [ "$DRY_RUN" = 1 ] || [ "$(id -u)" = 0 ] || die "must run as root (use --dry-run to preview without root)"
}
# need_value FLAG ARGC NEXT: a flag's value must exist and must not look like another flag.
need_value() { if [ "$2" -lt 2 ] || [[ $3 == --* ]]; then usage_error "$1 needs a value"; fi; }
# split_eq rewrites --flag=value into --flag value so the parsers only handle one form.
split_eq() {
  SPLIT_ARGS=()
  local a
  for a in "$@"; do
    case $a in --*=*) SPLIT_ARGS+=("${a%%=*}" "${a#*=}") ;; *) SPLIT_ARGS+=("$a") ;; esac
  done
}
# redact hides secrets when file contents are shown in a dry-run.
redact() {
  sed -E 's/^([A-Za-z0-9_]*(SECRET|PASS)[A-Za-z0-9_]*=).*/\1<redacted>/; s/(auth_pass[[:space:]]+).*/\1<redacted>/; s/("secretKey"[[:space:]]*:[[:space:]]*)"[^"]*"/\1"<redacted>"/'
}
# write_file MODE DEST < content: atomic replace through a 0600 temp file in the same directory, so the
# file is never partially written nor readable by others before its final mode is set. Sets WROTE=1 when
# the file changed, WROTE=0 when it already had this content and mode.
write_file() {
  local mode=$1 dest=$2 content tmp
  content=$(cat; printf x)
  content=${content%x}
  WROTE=1
  if [ -f "$dest" ] && [ -r "$dest" ] && printf '%s' "$content" | cmp -s - "$dest" &&
    [ "$((8#$(stat -c %a "$dest")))" = "$((8#$mode))" ]; then
    # shellcheck disable=SC2034 # read by the callers that care whether a restart is needed
    WROTE=0
    log "unchanged: $dest"
    return 0
  fi
  if [ "$DRY_RUN" = 1 ]; then
    printf '[dry-run] write %s (mode %s):\n' "$dest" "$mode"
    printf '%s' "$content" | redact | sed 's/^/[dry-run]   | /'
    return 0
  fi
  mkdir -p "$(dirname "$dest")"
  tmp=$(mktemp "$(dirname "$dest")/.${dest##*/}.XXXXXX")
  if ! { printf '%s' "$content" >"$tmp" && chmod "$mode" "$tmp" && mv -f "$tmp" "$dest"; }; then
    rm -f "$tmp"
    die "could not write $dest"
  fi
  log "wrote $dest (mode $mode)"
}
# ---- end of common helpers ----

weed_url="" weed_path="" version=latest force_install=0
install_dir=/usr/local/bin data_dir=/var/lib/seaweedfs config_dir=/etc/seaweedfs
port=8333 bind="" bucket=nstance region=us-east-1 endpoint_host=""
access_key=${SEAWEEDFS_ACCESS_KEY-} secret_key=${SEAWEEDFS_SECRET_KEY-}
uninstall=0 purge=0

split_eq "$@"
set -- "${SPLIT_ARGS[@]+"${SPLIT_ARGS[@]}"}"
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) show_help; exit 0 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --weed-url) need_value "$1" $# "${2-}"; weed_url=$2; shift 2 ;;
    --weed-path) need_value "$1" $# "${2-}"; weed_path=$2; shift 2 ;;
    --version) need_value "$1" $# "${2-}"; version=$2; shift 2 ;;
    --force-install) force_install=1; shift ;;
    --install-dir) need_value "$1" $# "${2-}"; install_dir=$2; shift 2 ;;
    --dir) need_value "$1" $# "${2-}"; data_dir=$2; shift 2 ;;
    --config-dir) need_value "$1" $# "${2-}"; config_dir=$2; shift 2 ;;
    --port) need_value "$1" $# "${2-}"; port=$2; shift 2 ;;
    --bind) need_value "$1" $# "${2-}"; bind=$2; shift 2 ;;
    --bucket) need_value "$1" $# "${2-}"; bucket=$2; shift 2 ;;
    --access-key) need_value "$1" $# "${2-}"; access_key=$2; shift 2 ;;
    --secret-key) need_value "$1" $# "${2-}"; secret_key=$2; shift 2 ;;
    --region) need_value "$1" $# "${2-}"; region=$2; shift 2 ;;
    --endpoint-host) need_value "$1" $# "${2-}"; endpoint_host=$2; shift 2 ;;
    --uninstall) uninstall=1; shift ;;
    --purge) purge=1; shift ;;
    *) usage_error "unknown option: $1" ;;
  esac
done

is_ipv4() { [[ $1 =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] && ((BASH_REMATCH[1] < 256 && BASH_REMATCH[2] < 256 && BASH_REMATCH[3] < 256 && BASH_REMATCH[4] < 256)); }

[ -z "$weed_url" ] || [ -z "$weed_path" ] || usage_error "give either --weed-url or --weed-path, not both"
[ -z "$weed_url" ] || [[ $weed_url =~ ^https?://[^[:space:]]+$ ]] || usage_error "--weed-url must be an http(s) URL, got '$weed_url'"
[[ $version =~ ^[A-Za-z0-9._-]+$ ]] || usage_error "--version must look like 3.80 or latest, got '$version'"
for d in "$install_dir" "$data_dir" "$config_dir"; do
  [[ $d == /* && $d != *[[:space:]]* ]] || usage_error "directories must be absolute paths without spaces, got '$d'"
done
if ! [[ $port =~ ^[1-9][0-9]{0,4}$ ]] || [ "$port" -gt 65535 ]; then usage_error "--port must be a port number, got '$port'"; fi
[ -z "$bind" ] || is_ipv4 "$bind" || usage_error "--bind must be an IPv4 address, got '$bind'"
# S3 bucket naming rules (the subset every implementation accepts).
[[ $bucket =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] || usage_error "--bucket must be 3-63 lowercase letters, digits, '.' or '-', got '$bucket'"
[ -z "$access_key" ] || [[ $access_key =~ ^[A-Za-z0-9]{8,128}$ ]] || usage_error "--access-key must be 8-128 letters or digits"
[ -z "$secret_key" ] || [[ $secret_key =~ ^[A-Za-z0-9/+=._-]{16,128}$ ]] || usage_error "--secret-key must be 16-128 characters from [A-Za-z0-9/+=._-]"
[[ $region =~ ^[a-z0-9-]+$ ]] || usage_error "--region must look like us-east-1, got '$region'"
[ -z "$endpoint_host" ] || [[ $endpoint_host =~ ^[A-Za-z0-9.-]+$ ]] || usage_error "--endpoint-host must be a host name or IPv4 address, got '$endpoint_host'"
[ "$purge" = 0 ] || [ "$uninstall" = 1 ] || usage_error "--purge only makes sense with --uninstall"

require_root
require_cmd systemctl curl
weed_bin=$install_dir/weed
unit=${NSTANCE_DEPLOY_ROOT-}/etc/systemd/system/seaweedfs.service
s3_config=$config_dir/s3.json

if [ "$uninstall" = 1 ]; then
  if systemctl is-active --quiet seaweedfs.service; then run systemctl stop seaweedfs.service; fi
  if systemctl is-enabled --quiet seaweedfs.service; then run systemctl disable seaweedfs.service; fi
  if [ -f "$unit" ]; then
    run rm -f "$unit"
    run systemctl daemon-reload
  fi
  if [ -f "$s3_config" ]; then run rm -f "$s3_config"; fi
  if [ "$purge" = 1 ]; then
    if [ -d "$data_dir" ]; then run rm -rf "$data_dir"; fi
    if [ -f "$weed_bin" ]; then run rm -f "$weed_bin"; fi
  else
    log "kept $data_dir and $weed_bin (use --purge to delete them)"
  fi
  exit 0
fi

# 1. The weed binary.
installed_now=0
if [ -x "$weed_bin" ] && [ "$force_install" = 0 ]; then
  log "weed already installed at $weed_bin (not reinstalling; --force-install to replace it)"
else
  require_cmd tar install
  if [ -n "$weed_path" ]; then
    [ -f "$weed_path" ] || die "--weed-path $weed_path does not exist"
    source_file=$weed_path
    source_name=${weed_path##*/}
  else
    if [ -z "$weed_url" ]; then
      case $(uname -m) in
        x86_64 | amd64) arch=amd64 ;;
        aarch64 | arm64) arch=arm64 ;;
        *) die "no SeaweedFS release for architecture $(uname -m); use --weed-url or --weed-path" ;;
      esac
      if [ "$version" = latest ]; then
        weed_url=https://github.com/seaweedfs/seaweedfs/releases/latest/download/linux_${arch}_full.tar.gz
      else
        weed_url=https://github.com/seaweedfs/seaweedfs/releases/download/$version/linux_${arch}_full.tar.gz
      fi
    fi
    source_name=${weed_url##*/}
  fi
  if [ "$DRY_RUN" = 1 ]; then work=/tmp/seaweedfs-install.XXXXXX; else work=$(mktemp -d); fi
  [ "$DRY_RUN" = 1 ] || trap 'rm -rf "$work"' EXIT
  if [ -z "$weed_path" ]; then
    source_file=$work/$source_name
    run curl -fSL --retry 3 -o "$source_file" "$weed_url"
  fi
  case $source_name in
    *.tar.gz | *.tgz)
      run tar -xzf "$source_file" -C "$work" weed
      run install -m 0755 "$work/weed" "$weed_bin"
      ;;
    *) run install -m 0755 "$source_file" "$weed_bin" ;;
  esac
  installed_now=1
fi

# 2. Keys: explicit ones win, then the ones already in s3.json (so re-runs do not break clients),
# then freshly generated ones.
existing_key() { # existing_key accessKey|secretKey
  [ -r "$s3_config" ] || return 0
  sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\([^\"]*\)\".*/\1/p" "$s3_config" | head -n 1
}
random_hex() { head -c 64 /dev/urandom | od -An -tx1 | tr -d ' \n' | cut -c "1-$1"; }
[ -n "$access_key" ] || access_key=$(existing_key accessKey)
[ -n "$secret_key" ] || secret_key=$(existing_key secretKey)
if [ -z "$access_key" ] || [ -z "$secret_key" ]; then
  log "generating a new S3 access key"
  if [ "$DRY_RUN" = 1 ]; then
    access_key="<generated>" secret_key="<generated>"
  else
    access_key=$(random_hex 20 | tr 'a-f' 'A-F')
    secret_key=$(random_hex 40)
  fi
fi

# 3. Files and service.
run mkdir -p "$data_dir"
run install -d -m 0700 "$config_dir"
write_file 0600 "$s3_config" <<EOF
{
  "identities": [
    {
      "name": "nstance",
      "credentials": [{ "accessKey": "$access_key", "secretKey": "$secret_key" }],
      "actions": ["Admin", "Read", "List", "Tagging", "Write"]
    }
  ]
}
EOF
config_changed=$WROTE

exec_start="$weed_bin server -dir=$data_dir -s3 -s3.port=$port -s3.config=$s3_config"
[ -z "$bind" ] || exec_start+=" -ip=$bind -ip.bind=$bind"
write_file 0644 "$unit" <<EOF
# Written by nstance's seaweedfs-test-setup.sh. Single-node SeaweedFS for dev/test only.
[Unit]
Description=SeaweedFS single-node server with S3 endpoint (nstance dev/test)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart=$exec_start
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
EOF
unit_changed=$WROTE

[ "$unit_changed" = 0 ] || run systemctl daemon-reload
run systemctl enable seaweedfs.service
if [ "$unit_changed$config_changed$installed_now" != 000 ]; then
  run systemctl restart seaweedfs.service
else
  run systemctl start seaweedfs.service
fi

# 4. The bucket. The signed requests read the credentials from stdin (-K -) so they never show in ps;
# S3 servers refuse SigV4 requests without x-amz-content-sha256 (checked against Ceph RGW).
s3_local=http://${bind:-127.0.0.1}:$port
signed_curl() { printf 'user = "%s:%s"\n' "$access_key" "$secret_key" | curl --aws-sigv4 "aws:amz:$region:s3" -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -K - "$@"; }
if [ "$DRY_RUN" = 1 ] && { [ "$unit_changed$config_changed$installed_now" != 000 ] || ! systemctl is-active --quiet seaweedfs.service; }; then
  printf '[dry-run] wait until %s answers\n' "$s3_local"
  printf '[dry-run] %s (credentials on stdin)\n' "$(quote_cmd curl -fsS -X PUT --aws-sigv4 "aws:amz:$region:s3" -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -K - "$s3_local/$bucket")"
else
  ready=0
  for _ in $(seq 1 60); do
    if curl -s -o /dev/null --max-time 2 "$s3_local/"; then ready=1 && break; fi
    sleep 1
  done
  [ "$ready" = 1 ] || die "SeaweedFS S3 did not answer on $s3_local within 60 s (see: journalctl -u seaweedfs)"
  code=$(signed_curl -s -o /dev/null -w '%{http_code}' -I "$s3_local/$bucket" || true)
  case $code in
    200) log "bucket '$bucket' already exists" ;;
    404)
      if [ "$DRY_RUN" = 1 ]; then
        printf '[dry-run] %s (credentials on stdin)\n' "$(quote_cmd curl -fsS -X PUT --aws-sigv4 "aws:amz:$region:s3" -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -K - "$s3_local/$bucket")"
      else
        signed_curl -fsS -X PUT "$s3_local/$bucket" >/dev/null || die "could not create bucket '$bucket' on $s3_local"
        log "created bucket '$bucket'"
      fi
      ;;
    *) die "unexpected HTTP status '$code' checking bucket '$bucket' on $s3_local (wrong keys in $s3_config?)" ;;
  esac
fi

# 5. What to give nstance.
if [ -z "$endpoint_host" ]; then
  if [ -n "$bind" ]; then
    endpoint_host=$bind
  else
    require_cmd ip
    endpoint_host=$(ip -o -4 addr show | awk '$2 != "lo" { sub(/\/.*/, "", $4); print $4; exit }')
    [ -n "$endpoint_host" ] || endpoint_host=127.0.0.1
  fi
fi
[ "$DRY_RUN" = 0 ] || log "dry-run: nothing was changed; the exports below are what the setup would print"
cat <<EOF
# SeaweedFS S3 for nstance (dev/test only):
export AWS_ENDPOINT_URL=http://$endpoint_host:$port
export AWS_S3_USE_PATH_STYLE=true
export AWS_REGION=$region
export AWS_ACCESS_KEY_ID=$access_key
export AWS_SECRET_ACCESS_KEY=$secret_key
# bucket: $bucket   e.g. nstance-admin config push config.jsonc --storage s3 --bucket $bucket --shard <shard>
EOF
