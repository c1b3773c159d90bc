#!/usr/bin/env bash
# server-with-keepalived.sh: install nstance-server as a hardened systemd service on a PVE node, with
# keepalived moving a virtual IP (VIP) to whichever node's server is the shard leader; optionally create
# the Proxmox user, role, ACL and API token nstance needs.
#
# Usage: server-with-keepalived.sh --shard ID --bucket B --vip IP/PREFIX [options]
#        server-with-keepalived.sh --token-only [--dry-run]
#
# Run as root on each PVE node that should run a replica. Steps (each skipped when already done):
#   1. with --create-token / --token-only: pveum user nstance@pve, role NstanceServer holding exactly the
#      privileges nstance uses (an existing role gets its privileges set with `pveum role modify`), an
#      ACL for it on /, and the API token nstance@pve!nstance-token (privilege separation off);
#   2. system user `nstance`; nstance-server in /usr/local/bin (with --server-bin);
#   3. /etc/nstance/nstance-server.env, mode 0600 from its creation: NSTANCE_* settings, PROXMOX_*
#      credentials and object storage credentials. Values come from the flags and the environment
#      (PROXMOX_API_URL, PROXMOX_TOKEN_ID, PROXMOX_TOKEN_SECRET, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
#      AWS_REGION, AWS_ENDPOINT_URL, AWS_S3_USE_PATH_STYLE, GOOGLE_APPLICATION_CREDENTIALS); a value
#      that is not given is kept from the existing file, so re-runs need not repeat secrets;
#   4. /etc/systemd/system/nstance-server.service (same as deploy/systemd/nstance-server.service);
#   5. keepalived (installed with apt-get when missing), a leader check script, and
#      /etc/keepalived/keepalived.conf, syntax-checked with `keepalived -t` before it is put in place;
#   6. enable and (re)start nstance-server and keepalived (restart only when something changed).
# The leader check asks this node's nstance-server whether it leads: `curl` GET /leaderz on its health
# endpoint (--health-addr), which answers 200 only while the replica holds the shard's lease and its term
# has started, and 503 from the moment it does not. Anything but a 200 within --check-timeout seconds
# fails the check. keepalived runs it every 2 s and adds 50 to the priority of the node where it passes,
# so the VIP follows the leader. (Every replica listens on the registration port, a standby to answer
# NotLeader, so a port check would pass on standbys too.) VRRP (IP protocol 112) must be allowed
# between the nodes on the VIP's interface (PVE firewall: IN ACCEPT -source <vip-subnet> -p vrrp).
# The shard config itself comes from create-shard-config.sh; advertise the VIP there (--advertise-host).
#
# Options:
#   --shard ID            shard this server runs (NSTANCE_SHARD)                               [required]
#   --bucket NAME         object storage bucket, or base directory for --storage file         [required]
#   --storage KIND        s3, gcs or file (NSTANCE_STORAGE)                                   [s3]
#   --prefix P            key prefix (passed as --prefix through NSTANCE_EXTRA_ARGS)          [none]
#   --id ID               this replica's ID (NSTANCE_ID)                       [hostname -s]
#   --s3-endpoint URL     S3-compatible endpoint; sets AWS_ENDPOINT_URL and AWS_S3_USE_PATH_STYLE=true
#   --region NAME         AWS_REGION                                            [$AWS_REGION, else us-east-1]
#   --proxmox-api-url U   PROXMOX_API_URL                [$PROXMOX_API_URL, else https://localhost:8006/api2/json]
#   --server-bin PATH     (alias --server-binary) install this nstance-server executable, or, for an
#                         nstance checkout directory
#                         (containing bin/nstance-server.js; not under /root or /home), a wrapper
#                         running it with node                   [use the existing /usr/local/bin/nstance-server]
#   --encryption-key FILE install FILE (32 bytes) as /etc/nstance/encryption.key (root:nstance 0640)
#   --generate-encryption-key  create /etc/nstance/encryption.key if missing (first node only: copy the
#                         same key to every other node, e.g. with --encryption-key)
#   --create-token        also do step 1 (run on one node; the token secret goes straight into the env
#                         file; on other nodes pass PROXMOX_TOKEN_SECRET in the environment)
#   --token-only          only do step 1 and print PROXMOX_TOKEN_ID/PROXMOX_TOKEN_SECRET
#   --vip IP/PREFIX       virtual IP with its prefix length, e.g. 10.0.0.100/24                [required]
#   --interface IFACE     interface for VRRP and the VIP   [the interface whose IPv4 subnet contains the VIP]
#   --vrid N              VRRP virtual router ID, 1-255, the same on all nodes, unique on the LAN [51]
#                         (alias --router-id)
#   --priority N          base VRRP priority 1-254 (the leader check adds 50)                   [100]
#   --auth-pass PASS      VRRP PASS authentication, 1-8 letters/digits (env KEEPALIVED_AUTH_PASS) [none]
#   --health-addr HOST:PORT  where the check reaches this node's nstance-server health endpoint: the
#                         config's shard.bind.health_addr; a wildcard host (0.0.0.0, [::] or none, as in
#                         create-shard-config.sh's default 0.0.0.0:8990) means loopback      [127.0.0.1:8990]
#   --check-timeout SECONDS  how long the check waits for the answer, 1-30 (keepalived kills the check
#                         one second later)                                                     [2]
#   --check-port N        refused: the old check's registration port, which every replica serves; use
#                         --health-addr
#   --check-script PATH   where the leader check script is installed [/usr/local/libexec/nstance-check-leader]
#   --script-user USER    user keepalived runs the check script as                              [nstance]
#   --no-keepalived       install only nstance-server (no VIP)
#   --print-keepalived-conf  print the keepalived.conf these options produce and exit (no root needed)
#   --uninstall           stop and remove the services' units, keepalived.conf (if written by this
#                         script) and the check script; keeps the env file, key, user and API token
#   --dry-run             print every command that would change something, one per line prefixed
#                         "[dry-run] ", and change nothing (file contents are shown, secrets redacted).
#                         Read-only probes (ip addr, id, pveum ... list, systemctl is-active, reading the
#                         current files) still run so the plan is accurate; root is not required.
#   -h, --help            show this help
# Environment: NSTANCE_DEPLOY_ROOT, if set, is prefixed to every file path (staging and tests only).
#
# Examples:
#   PROXMOX_TOKEN_ID='nstance@pve!nstance-token' PROXMOX_TOKEN_SECRET=... AWS_ACCESS_KEY_ID=... \
#   AWS_SECRET_ACCESS_KEY=... ./server-with-keepalived.sh --shard pve-a --bucket nstance \
#       --s3-endpoint http://10.0.0.5:8333 --vip 10.0.0.100/24 --server-bin /opt/nstance
#   ./server-with-keepalived.sh --create-token --shard pve-a --bucket nstance --vip 10.0.0.100/24 --dry-run
#   ./server-with-keepalived.sh --token-only
#
# Exit status: 0 done, 1 failure, 2 bad usage.
set -euo pipefail

LOG_TAG=server-with-keepalived
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

# NSTANCE_DEPLOY_ROOT prefixes every path the script reads or writes (staging and tests only).
ROOT=${NSTANCE_DEPLOY_ROOT-}
ENV_FILE=$ROOT/etc/nstance/nstance-server.env
KEY_FILE=$ROOT/etc/nstance/encryption.key
UNIT_FILE=$ROOT/etc/systemd/system/nstance-server.service
KEEPALIVED_CONF=$ROOT/etc/keepalived/keepalived.conf
SERVER_BIN=$ROOT/usr/local/bin/nstance-server
PVE_USER=nstance@pve PVE_ROLE=NstanceServer PVE_TOKEN=nstance-token
# Exactly the privileges of the integration guide's permissions table.
PVE_PRIVS=Sys.Audit,VM.Allocate,VM.Audit,VM.Clone,VM.PowerMgmt,VM.Config.CPU,VM.Config.Memory,VM.Config.Network,VM.Config.Disk,VM.Config.CDROM,VM.Config.Options,Datastore.Audit,Datastore.Allocate,Datastore.AllocateSpace,Datastore.AllocateTemplate,SDN.Use

shard="" bucket="" storage=s3 prefix="" server_id="" s3_endpoint="" region="" api_url=""
server_bin_src="" key_src="" generate_key=0 create_token=0 token_only=0
vip="" iface="" vrid=51 priority=100 auth_pass=${KEEPALIVED_AUTH_PASS-} health_addr=127.0.0.1:8990 check_timeout=2
check_script=$ROOT/usr/local/libexec/nstance-check-leader script_user=nstance
no_keepalived=0 print_conf=0 uninstall=0

split_eq "$@"
set -- "${SPLIT_ARGS[@]+"${SPLIT_ARGS[@]}"}"
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) show_help; exit 0 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --shard) need_value "$1" $# "${2-}"; shard=$2; shift 2 ;;
    --bucket) need_value "$1" $# "${2-}"; bucket=$2; shift 2 ;;
    --storage) need_value "$1" $# "${2-}"; storage=$2; shift 2 ;;
    --prefix) need_value "$1" $# "${2-}"; prefix=$2; shift 2 ;;
    --id) need_value "$1" $# "${2-}"; server_id=$2; shift 2 ;;
    --s3-endpoint) need_value "$1" $# "${2-}"; s3_endpoint=$2; shift 2 ;;
    --region) need_value "$1" $# "${2-}"; region=$2; shift 2 ;;
    --proxmox-api-url) need_value "$1" $# "${2-}"; api_url=$2; shift 2 ;;
    --server-bin | --server-binary) need_value "$1" $# "${2-}"; server_bin_src=$2; shift 2 ;;
    --encryption-key) need_value "$1" $# "${2-}"; key_src=$2; shift 2 ;;
    --generate-encryption-key) generate_key=1; shift ;;
    --create-token) create_token=1; shift ;;
    --token-only) token_only=1; create_token=1; shift ;;
    --vip) need_value "$1" $# "${2-}"; vip=$2; shift 2 ;;
    --interface) need_value "$1" $# "${2-}"; iface=$2; shift 2 ;;
    --vrid | --router-id) need_value "$1" $# "${2-}"; vrid=$2; shift 2 ;;
    --priority) need_value "$1" $# "${2-}"; priority=$2; shift 2 ;;
    --auth-pass) need_value "$1" $# "${2-}"; auth_pass=$2; shift 2 ;;
    --health-addr) need_value "$1" $# "${2-}"; health_addr=$2; shift 2 ;;
    --check-timeout) need_value "$1" $# "${2-}"; check_timeout=$2; shift 2 ;;
    --check-port) usage_error "--check-port is gone: every replica listens on the registration port, so the check asks /leaderz on the health endpoint instead (--health-addr HOST:PORT, default 127.0.0.1:8990)" ;;
    --check-script) need_value "$1" $# "${2-}"; check_script=$2; shift 2 ;;
    --script-user) need_value "$1" $# "${2-}"; script_user=$2; shift 2 ;;
    --no-keepalived) no_keepalived=1; shift ;;
    --print-keepalived-conf) print_conf=1; shift ;;
    --uninstall) uninstall=1; shift ;;
    *) usage_error "unknown option: $1" ;;
  esac
done

is_ipv4() { [[ $1 =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] && ((BASH_REMATCH[1] < 256 && BASH_REMATCH[2] < 256 && BASH_REMATCH[3] < 256 && BASH_REMATCH[4] < 256)); }
ip_to_int() { local a b c d; IFS=. read -r a b c d <<<"$1"; echo $(((a << 24) | (b << 16) | (c << 8) | d)); }
is_port() { [[ $1 =~ ^[1-9][0-9]{0,4}$ ]] && [ "$1" -le 65535 ]; }
# health_url HOST:PORT prints the /leaderz URL of that health address; a wildcard host (empty, 0.0.0.0,
# [::]) is this node's loopback, as the server listens on every interface then. Fails on anything else.
health_url() {
  local host=${1%:*} port=${1##*:}
  [[ $1 == *:* ]] && is_port "$port" || return 1
  case $host in
    "" | 0.0.0.0) host=127.0.0.1 ;;
    "[::]") host="[::1]" ;;
    \[*\]) [[ $host =~ ^\[[0-9A-Fa-f:.]+\]$ ]] || return 1 ;;
    *) is_ipv4 "$host" || [[ $host =~ ^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$ && $host =~ [A-Za-z] ]] || return 1 ;;
  esac
  printf 'http://%s:%s/leaderz\n' "$host" "$port"
}

# ---- validate flags (everything, before any probe or change) ----
want_server=1 want_keepalived=1
[ "$token_only" = 0 ] || { want_server=0; want_keepalived=0; }
[ "$no_keepalived" = 0 ] || want_keepalived=0
[ "$print_conf" = 0 ] || { want_server=0; want_keepalived=1; }
[ "$uninstall" = 0 ] || { want_server=0; want_keepalived=0; }

if [ "$want_server" = 1 ]; then
  [ -n "$shard" ] || usage_error "--shard is required"
  [[ $shard =~ ^[a-z0-9]+(-[a-z0-9]+)*$ && ${#shard} -le 32 ]] || usage_error "--shard must be lowercase letters and digits with single '-', at most 32 characters; got '$shard'"
  [ -n "$bucket" ] || usage_error "--bucket is required"
  [[ $bucket =~ ^[A-Za-z0-9._/-]+$ ]] || usage_error "--bucket must be a bucket name (or a directory for --storage file), got '$bucket'"
  case $storage in s3 | gcs | file) ;; *) usage_error "--storage must be s3, gcs or file, got '$storage'" ;; esac
  [ -z "$prefix" ] || [[ $prefix =~ ^[A-Za-z0-9._/-]+$ ]] || usage_error "--prefix must be letters, digits, '.', '_', '-' and '/', got '$prefix'"
  [ -z "$server_id" ] || [[ $server_id =~ ^[A-Za-z0-9._-]{1,63}$ ]] || usage_error "--id must be 1-63 letters, digits, '.', '_' or '-', got '$server_id'"
  [ -z "$s3_endpoint" ] || [[ $s3_endpoint =~ ^https?://[^[:space:]\'\\]+$ ]] || usage_error "--s3-endpoint must be an http(s) URL, got '$s3_endpoint'"
  [ -z "$region" ] || [[ $region =~ ^[a-z0-9-]+$ ]] || usage_error "--region must look like us-east-1, got '$region'"
  [ -z "$api_url" ] || [[ $api_url =~ ^https?://[^[:space:]\'\\]+$ ]] || usage_error "--proxmox-api-url must be an http(s) URL, got '$api_url'"
  [ -z "$key_src" ] || [ "$generate_key" = 0 ] || usage_error "give either --encryption-key or --generate-encryption-key"
  [ -z "$key_src" ] || [ -f "$key_src" ] || usage_error "--encryption-key $key_src does not exist"
  if [ -n "$server_bin_src" ]; then
    if [ -d "$server_bin_src" ]; then
      server_bin_src=$(cd "$server_bin_src" && pwd)
      [ -f "$server_bin_src/bin/nstance-server.js" ] || usage_error "--server-bin $server_bin_src is a directory without bin/nstance-server.js"
      [[ $server_bin_src != /root* && $server_bin_src != /home* ]] || usage_error "--server-bin $server_bin_src: the service cannot see /root or /home (ProtectHome); put the checkout under /opt"
      [[ $server_bin_src != *[\'\\]* ]] || usage_error "--server-bin path may not contain quotes or backslashes"
    else
      if [ ! -f "$server_bin_src" ] || [ ! -x "$server_bin_src" ]; then
        usage_error "--server-bin $server_bin_src is not an executable file or an nstance checkout"
      fi
    fi
  fi
fi
if [ "$want_keepalived" = 1 ]; then
  [ -n "$vip" ] || usage_error "--vip is required (or --no-keepalived)"
  vip_ip=${vip%/*} vip_len=${vip#*/}
  if [[ $vip != */* ]] || ! is_ipv4 "$vip_ip" || ! [[ $vip_len =~ ^[0-9]{1,2}$ ]] || [ "$vip_len" -gt 32 ]; then
    usage_error "--vip must be an IPv4 CIDR like 10.0.0.100/24, got '$vip'"
  fi
  [ -z "$iface" ] || [[ $iface =~ ^[A-Za-z0-9._-]{1,15}$ ]] || usage_error "--interface must be an interface name like vmbr0, got '$iface'"
  if ! [[ $vrid =~ ^[1-9][0-9]{0,2}$ ]] || [ "$vrid" -gt 255 ]; then usage_error "--vrid must be a number from 1 to 255, got '$vrid'"; fi
  if ! [[ $priority =~ ^[1-9][0-9]{0,2}$ ]] || [ "$priority" -gt 254 ]; then usage_error "--priority must be a number from 1 to 254, got '$priority'"; fi
  [ -z "$auth_pass" ] || [[ $auth_pass =~ ^[A-Za-z0-9]{1,8}$ ]] || usage_error "--auth-pass must be 1-8 letters or digits (VRRP PASS authentication carries at most 8)"
  check_url=$(health_url "$health_addr") || usage_error "--health-addr must be HOST:PORT (IPv4, [IPv6] or a DNS name; the host may be empty), got '$health_addr'"
  if ! [[ $check_timeout =~ ^[1-9][0-9]?$ ]] || [ "$check_timeout" -gt 30 ]; then usage_error "--check-timeout must be a number of seconds from 1 to 30, got '$check_timeout'"; fi
  [[ $check_script == /* && $check_script =~ ^[A-Za-z0-9._/-]+$ ]] || usage_error "--check-script must be an absolute path, got '$check_script'"
  [[ $script_user =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || usage_error "--script-user must be a user name, got '$script_user'"
fi

# ---- keepalived: find the VIP's interface and render the config ----
# pick_interface prints the interface whose IPv4 subnet contains the VIP (longest prefix wins).
pick_interface() {
  local name cidr addr plen mask best="" best_len=-1 ambiguous="" vip_int
  vip_int=$(ip_to_int "$vip_ip")
  while read -r name cidr; do
    name=${name%@*} addr=${cidr%/*} plen=${cidr#*/}
    if [ "$name" = lo ] || ! is_ipv4 "$addr"; then continue; fi
    mask=$(((0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF))
    ((($(ip_to_int "$addr") & mask) == (vip_int & mask))) || continue
    if ((plen > best_len)); then
      best=$name best_len=$plen ambiguous=""
    elif ((plen == best_len)) && [ "$name" != "$best" ]; then
      ambiguous+=" $name"
    fi
  done < <(ip -o -4 addr show | awk '{ print $2, $4 }')
  [ -n "$best" ] || die "no interface has an IPv4 address in the subnet of --vip $vip; give --interface"
  [ -z "$ambiguous" ] || die "several interfaces hold the subnet of --vip $vip ($best$ambiguous); give --interface"
  printf '%s\n' "$best"
}
render_keepalived_conf() {
  cat <<EOF
# Written by nstance's server-with-keepalived.sh.
# Moves the VIP $vip to the node whose nstance-server is the shard leader: the check
# script adds 50 to that node's priority. All nodes start as BACKUP. VRRP (IP protocol 112)
# must be allowed between the nodes on $iface.
global_defs {
    enable_script_security
    script_user $script_user
}

vrrp_script nstance_leader {
    script "$check_script"
    interval 2
    timeout $((check_timeout + 1))
    fall 2
    rise 2
    weight 50
}

vrrp_instance NSTANCE_$vrid {
    state BACKUP
    interface $iface
    virtual_router_id $vrid
    priority $priority
    advert_int 1
EOF
  if [ -n "$auth_pass" ]; then
    cat <<EOF
    authentication {
        auth_type PASS
        auth_pass $auth_pass
    }
EOF
  fi
  cat <<EOF
    virtual_ipaddress {
        $vip dev $iface
    }
    track_script {
        nstance_leader
    }
}
EOF
}
render_check_script() {
  cat <<EOF
#!/bin/sh
# Written by nstance's server-with-keepalived.sh for keepalived: succeeds only on the nstance shard leader.
# GET /leaderz on this node's nstance-server health endpoint answers 200 only while that replica holds
# the shard's lease and its term has started; a standby, a leader still starting or one that lost its
# lease answers 503. Anything but a 200 within $check_timeout s (no answer, a refused connection) fails.
code=\$(curl --silent --globoff --noproxy '*' --max-time $check_timeout --output /dev/null --write-out '%{http_code}' '$check_url') || exit 1
[ "\$code" = 200 ]
EOF
}

[ "$print_conf" = 1 ] || require_root
if [ "$want_keepalived" = 1 ]; then
  require_cmd ip
  if [ -z "$iface" ]; then
    iface=$(pick_interface)
    log "VIP $vip belongs on interface $iface (its subnet matches)"
  else
    ip -o link show dev "$iface" >/dev/null 2>&1 || die "--interface $iface does not exist on this node"
  fi
fi
if [ "$print_conf" = 1 ]; then
  render_keepalived_conf
  exit 0
fi

require_cmd systemctl

# ---- uninstall ----
if [ "$uninstall" = 1 ]; then
  for svc in nstance-server keepalived; do
    if [ "$svc" = keepalived ] && ! grep -qs "nstance's server-with-keepalived.sh" "$KEEPALIVED_CONF"; then continue; fi
    if systemctl is-active --quiet "$svc.service"; then run systemctl stop "$svc.service"; fi
    if systemctl is-enabled --quiet "$svc.service"; then run systemctl disable "$svc.service"; fi
  done
  if [ -f "$UNIT_FILE" ]; then run rm -f "$UNIT_FILE"; run systemctl daemon-reload; fi
  if grep -qs "nstance's server-with-keepalived.sh" "$KEEPALIVED_CONF"; then run rm -f "$KEEPALIVED_CONF"; fi
  if [ -f "$check_script" ]; then run rm -f "$check_script"; fi
  log "kept $ENV_FILE, $KEY_FILE, $SERVER_BIN, user nstance and the PVE API token; remove them by hand if wanted"
  exit 0
fi

# ---- 1. Proxmox user, role, ACL, token ----
# json_objects splits pveum's flat JSON list output into one object per line.
json_objects() { sed 's/},[[:space:]]*{/}\n{/g'; }
json_field() { sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\([^\"]*\)\".*/\1/p"; }
token_secret=""
if [ "$create_token" = 1 ]; then
  require_cmd pveum
  users=$(pveum user list --output-format json)
  user_exists=0
  if grep -q "\"userid\"[[:space:]]*:[[:space:]]*\"$PVE_USER\"" <<<"$users"; then
    user_exists=1
    log "PVE user $PVE_USER exists"
  else
    run pveum user add "$PVE_USER" --comment "nstance server (owns the API token)"
  fi

  roles=$(pveum role list --output-format json)
  role_line=$(json_objects <<<"$roles" | grep "\"roleid\"[[:space:]]*:[[:space:]]*\"$PVE_ROLE\"" || true)
  if [ -z "$role_line" ]; then
    run pveum role add "$PVE_ROLE" --privs "$PVE_PRIVS"
  else
    have=$(json_field privs <<<"$role_line" | tr -s ', ' '\n' | sed '/^$/d' | sort | tr '\n' ,)
    want=$(tr ',' '\n' <<<"$PVE_PRIVS" | sort | tr '\n' ,)
    if [ "$have" = "$want" ]; then
      log "PVE role $PVE_ROLE exists with the right privileges"
    else
      run pveum role modify "$PVE_ROLE" --privs "$PVE_PRIVS"
    fi
  fi

  acls=$(pveum acl list --output-format json)
  if json_objects <<<"$acls" | grep "\"path\"[[:space:]]*:[[:space:]]*\"/\"" | grep "\"ugid\"[[:space:]]*:[[:space:]]*\"$PVE_USER\"" |
    grep -q "\"roleid\"[[:space:]]*:[[:space:]]*\"$PVE_ROLE\""; then
    log "ACL $PVE_ROLE for $PVE_USER on / exists"
  else
    run pveum acl modify / --users "$PVE_USER" --roles "$PVE_ROLE"
  fi

  tokens='[]'
  [ "$user_exists" = 0 ] || tokens=$(pveum user token list "$PVE_USER" --output-format json)
  if grep -q "\"tokenid\"[[:space:]]*:[[:space:]]*\"$PVE_TOKEN\"" <<<"$tokens"; then
    log "API token $PVE_USER!$PVE_TOKEN exists (its secret cannot be read back from PVE)"
  elif [ "$DRY_RUN" = 1 ]; then
    run pveum user token add "$PVE_USER" "$PVE_TOKEN" --privsep 0 --output-format json
    token_secret="<new token secret>"
  else
    log "+ pveum user token add $PVE_USER $PVE_TOKEN --privsep 0 --output-format json"
    created=$(pveum user token add "$PVE_USER" "$PVE_TOKEN" --privsep 0 --output-format json)
    token_secret=$(json_field value <<<"$created")
    [ -n "$token_secret" ] || die "pveum created the token but its output had no secret; remove it with 'pveum user token remove $PVE_USER $PVE_TOKEN' and re-run"
  fi
  if [ "$token_only" = 1 ]; then
    if [ -n "$token_secret" ]; then
      printf "PROXMOX_TOKEN_ID='%s'\nPROXMOX_TOKEN_SECRET='%s'\n" "$PVE_USER!$PVE_TOKEN" "$token_secret"
      log "store the secret now: PVE shows it only once"
    fi
    exit 0
  fi
fi

# ---- 2-3. user, binary, key, env file ----
require_cmd install
if id -u nstance >/dev/null 2>&1; then
  log "system user nstance exists"
else
  require_cmd useradd
  run useradd --system --user-group --no-create-home --home-dir /var/lib/nstance --shell /usr/sbin/nologin nstance
fi

if [ -n "$server_bin_src" ]; then
  if [ -d "$server_bin_src" ]; then
    write_file 0755 "$SERVER_BIN" <<EOF
#!/bin/sh
# Written by nstance's server-with-keepalived.sh: runs nstance-server from the checkout below.
exec node '$server_bin_src/bin/nstance-server.js' "\$@"
EOF
    server_changed=$WROTE
  elif [ -f "$SERVER_BIN" ] && cmp -s "$server_bin_src" "$SERVER_BIN"; then
    log "unchanged: $SERVER_BIN"
    server_changed=0
  else
    run install -m 0755 "$server_bin_src" "$SERVER_BIN"
    server_changed=1
  fi
else
  server_changed=0
  if [ ! -x "$SERVER_BIN" ]; then
    [ "$DRY_RUN" = 1 ] || die "$SERVER_BIN is missing: pass --server-bin (an executable or an nstance checkout)"
    warn "$SERVER_BIN is missing: a real run needs --server-bin"
  fi
fi

run install -d -m 0750 -o root -g nstance "$ROOT/etc/nstance"
if [ -n "$key_src" ]; then
  key_len=$(tr -d '[:space:]' <"$key_src" | wc -c)
  [ "$key_len" -eq 32 ] || die "--encryption-key $key_src must hold exactly 32 characters (it has $key_len)"
  if [ -f "$KEY_FILE" ] && cmp -s "$key_src" "$KEY_FILE"; then
    log "unchanged: $KEY_FILE"
  else
    run install -m 0640 -o root -g nstance "$key_src" "$KEY_FILE"
  fi
elif [ "$generate_key" = 1 ] && [ ! -f "$KEY_FILE" ]; then
  if [ "$DRY_RUN" = 1 ]; then
    printf '[dry-run] generate %s (32 random base64 characters, root:nstance 0640)\n' "$KEY_FILE"
  else
    # 24 random bytes as base64: 32 printable characters, so trimming by the server cannot shorten it.
    key_tmp=$(mktemp "$(dirname "$KEY_FILE")/.encryption.key.XXXXXX")
    head -c 24 /dev/urandom | base64 >"$key_tmp"
    run install -m 0640 -o root -g nstance "$key_tmp" "$KEY_FILE"
    rm -f "$key_tmp"
    log "generated $KEY_FILE: copy it to every other server of this cluster (all must use the same key)"
  fi
elif [ ! -f "$KEY_FILE" ]; then
  warn "$KEY_FILE does not exist; it is needed if the shard config reads the encryption key from a file (--encryption-key or --generate-encryption-key)"
fi

# The unit passes the key to the server whenever this node has one: without it, agent registration and
# the operator endpoint (TLS with the cluster CA) stay off.
key_args=""
if [ -n "$key_src" ] || [ "$generate_key" = 1 ] || [ -f "$KEY_FILE" ]; then key_args="--encryption-key-file /etc/nstance/encryption.key"; fi

# Each setting: flag, else environment, else the value already in the env file.
existing() { if [ -r "$ENV_FILE" ]; then sed -n "s/^$1='\(.*\)'\$/\1/p" "$ENV_FILE" | tail -n 1; fi; }
pick() { local v=${2:-${!1-}}; [ -n "$v" ] || v=$(existing "$1"); [ -n "$v" ] || v=${3-}; printf '%s' "$v"; }
[ -z "$token_secret" ] || { PROXMOX_TOKEN_ID="$PVE_USER!$PVE_TOKEN" PROXMOX_TOKEN_SECRET=$token_secret; }
declare -A env_values=(
  [NSTANCE_STORAGE]=$storage [NSTANCE_BUCKET]=$bucket [NSTANCE_SHARD]=$shard
  [NSTANCE_ID]=$(pick NSTANCE_ID "$server_id" "$(hostname -s)")
  [NSTANCE_EXTRA_ARGS]=${prefix:+--prefix $prefix}
  [NSTANCE_KEY_ARGS]=$key_args
  [PROXMOX_API_URL]=$(pick PROXMOX_API_URL "$api_url" https://localhost:8006/api2/json)
  [PROXMOX_TOKEN_ID]=$(pick PROXMOX_TOKEN_ID "")
  [PROXMOX_TOKEN_SECRET]=$(pick PROXMOX_TOKEN_SECRET "")
  [AWS_REGION]=$(pick AWS_REGION "$region" us-east-1)
  [AWS_ACCESS_KEY_ID]=$(pick AWS_ACCESS_KEY_ID "")
  [AWS_SECRET_ACCESS_KEY]=$(pick AWS_SECRET_ACCESS_KEY "")
  [AWS_ENDPOINT_URL]=$(pick AWS_ENDPOINT_URL "$s3_endpoint")
  [AWS_S3_USE_PATH_STYLE]=$(pick AWS_S3_USE_PATH_STYLE "${s3_endpoint:+true}")
  [GOOGLE_APPLICATION_CREDENTIALS]=$(pick GOOGLE_APPLICATION_CREDENTIALS "")
)
env_order=(NSTANCE_STORAGE NSTANCE_BUCKET NSTANCE_SHARD NSTANCE_ID NSTANCE_EXTRA_ARGS NSTANCE_KEY_ARGS PROXMOX_API_URL
  PROXMOX_TOKEN_ID PROXMOX_TOKEN_SECRET AWS_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_ENDPOINT_URL
  AWS_S3_USE_PATH_STYLE GOOGLE_APPLICATION_CREDENTIALS)
[ -n "${env_values[PROXMOX_TOKEN_ID]}" ] || die "PROXMOX_TOKEN_ID is not set (environment, existing $ENV_FILE, or --create-token)"
[ -n "${env_values[PROXMOX_TOKEN_SECRET]}" ] || die "PROXMOX_TOKEN_SECRET is not set (environment or existing $ENV_FILE); if the token was created on another node, copy its secret from there, or remove it with 'pveum user token remove $PVE_USER $PVE_TOKEN' and re-run with --create-token"
[[ ${env_values[PROXMOX_TOKEN_ID]} =~ ^[^@[:space:]]+@[^!@[:space:]]+![A-Za-z][A-Za-z0-9._-]*$ ]] || die "PROXMOX_TOKEN_ID must look like user@realm!tokenname, got '${env_values[PROXMOX_TOKEN_ID]}'"
if [ "$storage" = s3 ] && { [ -z "${env_values[AWS_ACCESS_KEY_ID]}" ] || [ -z "${env_values[AWS_SECRET_ACCESS_KEY]}" ]; }; then
  warn "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not set: nstance-server will only reach S3 if the SDK finds credentials another way"
fi
if [ "$storage" = gcs ] && [ -z "${env_values[GOOGLE_APPLICATION_CREDENTIALS]}" ]; then
  warn "GOOGLE_APPLICATION_CREDENTIALS is not set; the credentials file must also be readable by user nstance"
fi
env_content="# Written by nstance's server-with-keepalived.sh; read by nstance-server.service. Holds secrets: mode 0600.
"
for k in "${env_order[@]}"; do
  v=${env_values[$k]}
  [[ $v != *[\'\\]* && $v != *$'\n'* ]] || die "the value of $k contains a quote, backslash or newline, which the env file cannot hold"
  if [ -n "$v" ] || [[ $k == NSTANCE_* ]]; then env_content+="$k='$v'"$'\n'; fi
done
# write_file creates its temporary file with mktemp (mode 0600) before writing, so the secrets are
# never readable by anyone but root, not even for a moment.
write_file 0600 "$ENV_FILE" <<<"${env_content%$'\n'}"
env_changed=$WROTE

# ---- 4. systemd unit (identical to deploy/systemd/nstance-server.service) ----
write_file 0644 "$UNIT_FILE" <<'EOF'
# nstance-server: keeps groups of Proxmox VE VMs at their desired size.
# Installed by deploy/proxmox/server-with-keepalived.sh. Settings and secrets (PROXMOX_*, AWS_*,
# NSTANCE_*) live in /etc/nstance/nstance-server.env, mode 0600, read by systemd as root.
[Unit]
Description=Nstance server (keeps Proxmox VE VM groups at their desired size)
Documentation=https://github.com/nstance-dev/nstance
After=network-online.target
Wants=network-online.target
# Stop retrying after 5 failed starts within 10 minutes rather than hammering PVE and object storage.
StartLimitIntervalSec=600
StartLimitBurst=5

[Service]
Type=simple
User=nstance
Group=nstance
EnvironmentFile=/etc/nstance/nstance-server.env
# ${VAR} is passed as one argument; $NSTANCE_KEY_ARGS and $NSTANCE_EXTRA_ARGS are split on spaces (empty: no arguments).
ExecStart=/usr/local/bin/nstance-server --storage ${NSTANCE_STORAGE} --bucket ${NSTANCE_BUCKET} --shard ${NSTANCE_SHARD} --id ${NSTANCE_ID} --cachedir /var/lib/nstance $NSTANCE_KEY_ARGS $NSTANCE_EXTRA_ARGS
Restart=on-failure
RestartSec=10s
TimeoutStopSec=30s
LimitNOFILE=65536

StateDirectory=nstance
StateDirectoryMode=0750
RuntimeDirectory=nstance
RuntimeDirectoryMode=0750
UMask=0077

NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
CapabilityBoundingSet=
# AF_NETLINK: Node lists interface addresses (advertise-address detection) over netlink.
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
SystemCallArchitectures=native
SystemCallFilter=@system-service
# EPERM instead of killing the process, so libuv falls back when a newer syscall (io_uring) is filtered.
SystemCallErrorNumber=EPERM
# MemoryDenyWriteExecute stays off: Node's JIT needs writable and executable memory.

[Install]
WantedBy=multi-user.target
EOF
unit_changed=$WROTE
[ "$unit_changed" = 0 ] || run systemctl daemon-reload

# ---- 5. keepalived ----
ka_changed=0 ka_installed_now=0
if [ "$want_keepalived" = 1 ]; then
  if ! command -v keepalived >/dev/null 2>&1; then
    require_cmd apt-get
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y keepalived
    ka_installed_now=1
  fi
  command -v curl >/dev/null 2>&1 || [ "$DRY_RUN" = 1 ] || die "required command 'curl' not found (the leader check uses it; apt-get install curl)"
  run install -d -m 0755 "$(dirname "$check_script")"
  write_file 0755 "$check_script" < <(render_check_script)
  check_changed=$WROTE
  conf_text=$(render_keepalived_conf)
  if [ "$DRY_RUN" = 1 ]; then
    printf '[dry-run] keepalived -t -f <new keepalived.conf> (syntax check before installing it)\n'
  else
    run install -d -m 0755 "$(dirname "$KEEPALIVED_CONF")"
    # keepalived 2.2's --config-test kills itself (SIGTERM) when script_user is an unprivileged user, so
    # the syntax is checked on a copy running the check as root; everything else is the real file.
    check_copy=$(mktemp)
    printf '%s\n' "$conf_text" | sed "s/^    script_user .*/    script_user root/" >"$check_copy"
    if ! keepalived -t -f "$check_copy" >&2; then
      rm -f "$check_copy"
      die "keepalived rejected the generated configuration (see above); $KEEPALIVED_CONF was not changed"
    fi
    rm -f "$check_copy"
  fi
  write_file 0644 "$KEEPALIVED_CONF" <<<"$conf_text"
  ka_changed=$((WROTE + check_changed + ka_installed_now))
fi

# ---- 6. services ----
run systemctl enable nstance-server.service
if [ "$((env_changed + unit_changed + server_changed))" -gt 0 ]; then
  run systemctl restart nstance-server.service
else
  run systemctl start nstance-server.service
fi
if [ "$want_keepalived" = 1 ]; then
  run systemctl enable keepalived.service
  if [ "$ka_changed" -gt 0 ]; then
    run systemctl restart keepalived.service
  else
    run systemctl start keepalived.service
  fi
fi
if [ "$DRY_RUN" = 1 ]; then
  log "dry-run: nothing was changed"
else
  log "nstance-server is running; follow it with: journalctl -u nstance-server -f"
  [ "$want_keepalived" = 0 ] || log "VIP $vip on $iface follows the shard leader (VRID $vrid)"
fi
