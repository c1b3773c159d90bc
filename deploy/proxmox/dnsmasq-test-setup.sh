#!/usr/bin/env bash
# dnsmasq-test-setup.sh: a DHCP server for the VMs nstance creates on one bridge or VLAN interface.
# DEV/TEST ONLY: in production the VM network's own DHCP (router, PVE SDN DHCP, IPAM) should do this.
#
# Usage: dnsmasq-test-setup.sh --interface IFACE [options]
#
# Run as root on one PVE node per subnet; the interface must exist on that node and carry an IPv4
# address in the subnet it serves. It writes /etc/dnsmasq.d/nstance-<iface>.conf (DHCP only: DNS is
# switched off with port=0), installs the dnsmasq package when it is missing, checks the file with
# `dnsmasq --test` and enables and (re)starts dnsmasq.service. Re-running with the same options changes
# nothing; several interfaces can be served by running it once per interface.
# Do not use it on nodes where PVE SDN DHCP or another DHCP server already serves that subnet. If the
# PVE firewall is enabled, allow DHCP (UDP 67/68) on the interface.
#
# Options:
#   --interface IFACE     bridge or VLAN interface, e.g. vmbr1 or vmbr0.100            [vmbr1]
#   --range-start IP      first address handed out      [network + 100, for /24 or larger subnets]
#   --range-end IP        last address handed out       [network + 250, for /24 or larger subnets]
#   --netmask MASK        netmask of the range, e.g. 255.255.255.0   [from the interface's prefix]
#   --lease-time T        lease time: seconds or N with s/m/h/d/w, or "infinite"   [1h]
#   --gateway IP          default router given to clients          [the interface's address]
#   --dns IP              DNS server given to clients (comma-separated list allowed)
#                         [first non-loopback nameserver in /etc/resolv.conf, else the gateway]
#   --domain NAME         domain search list given to clients                         [nstance.local]
#   --uninstall           remove the interface's config file and restart dnsmasq (package is kept)
#   --dry-run             print every command that would change something, one per line prefixed
#                         "[dry-run] ", and change nothing. Read-only probes (ip addr, systemctl
#                         is-active, reading the current config) still run; root is not required.
#   -h, --help            show this help
#
# Examples:
#   ./dnsmasq-test-setup.sh --interface vmbr1
#   ./dnsmasq-test-setup.sh --interface vmbr0.100 --range-start 10.0.0.100 --range-end 10.0.0.199 \
#       --gateway 10.0.0.1 --dns 10.0.0.1 --lease-time 12h
#
# Exit status: 0 done, 1 failure, 2 bad usage.
set -euo pipefail

LOG_TAG=dnsmasq-test-setup
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

iface=vmbr1 range_start="" range_end="" netmask="" lease_time=1h gateway="" dns="" domain=nstance.local
uninstall=0

split_eq "$@"
set -- "${SPLIT_ARGS[@]+"${SPLIT_ARGS[@]}"}"
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) show_help; exit 0 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --interface) need_value "$1" $# "${2-}"; iface=$2; shift 2 ;;
    --range-start) need_value "$1" $# "${2-}"; range_start=$2; shift 2 ;;
    --range-end) need_value "$1" $# "${2-}"; range_end=$2; shift 2 ;;
    --netmask) need_value "$1" $# "${2-}"; netmask=$2; shift 2 ;;
    --lease-time) need_value "$1" $# "${2-}"; lease_time=$2; shift 2 ;;
    --gateway) need_value "$1" $# "${2-}"; gateway=$2; shift 2 ;;
    --dns) need_value "$1" $# "${2-}"; dns=$2; shift 2 ;;
    --domain) need_value "$1" $# "${2-}"; domain=$2; shift 2 ;;
    --uninstall) uninstall=1; shift ;;
    *) usage_error "unknown option: $1" ;;
  esac
done

is_ipv4() { [[ $1 =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] && ((BASH_REMATCH[1] < 256 && BASH_REMATCH[2] < 256 && BASH_REMATCH[3] < 256 && BASH_REMATCH[4] < 256)); }
ip_to_int() { local a b c d; IFS=. read -r a b c d <<<"$1"; echo $(((a << 24) | (b << 16) | (c << 8) | d)); }
int_to_ip() { echo "$((($1 >> 24) & 255)).$((($1 >> 16) & 255)).$((($1 >> 8) & 255)).$(($1 & 255))"; }
prefix_to_mask() { int_to_ip $(((0xFFFFFFFF << (32 - $1)) & 0xFFFFFFFF)); }
mask_to_prefix() { # dies unless the mask is contiguous
  local m p=0
  m=$(ip_to_int "$1")
  while ((p < 32 && (m & (1 << (31 - p))))); do p=$((p + 1)); done
  [ "$(prefix_to_mask "$p")" = "$1" ] || usage_error "--netmask $1 is not a valid netmask"
  echo "$p"
}

[[ $iface =~ ^[A-Za-z0-9._-]{1,15}$ ]] || usage_error "--interface must be an interface name like vmbr1, got '$iface'"
for pair in "range-start:$range_start" "range-end:$range_end" "gateway:$gateway" "netmask:$netmask"; do
  value=${pair#*:}
  [ -z "$value" ] || is_ipv4 "$value" || usage_error "--${pair%%:*} must be an IPv4 address, got '$value'"
done
if [ -n "$dns" ]; then
  IFS=, read -ra dns_list <<<"$dns"
  for d in "${dns_list[@]}"; do is_ipv4 "$d" || usage_error "--dns must be IPv4 addresses separated by commas, got '$dns'"; done
fi
[[ $lease_time =~ ^([0-9]+[smhdw]?|infinite)$ ]] || usage_error "--lease-time must look like 3600, 12h or infinite, got '$lease_time'"
[[ $domain =~ ^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$ ]] ||
  usage_error "--domain must be a domain name like nstance.local, got '$domain'"

require_root
require_cmd ip systemctl
conf=/etc/dnsmasq.d/nstance-$iface.conf

if [ "$uninstall" = 1 ]; then
  if [ -f "$conf" ]; then
    run rm -f "$conf"
    if systemctl is-active --quiet dnsmasq.service; then run systemctl restart dnsmasq.service; fi
  else
    log "$conf does not exist; nothing to remove"
  fi
  exit 0
fi

# The interface's own address decides the defaults and bounds the range.
addr=$(ip -o -4 addr show dev "$iface" | awk '{ print $4; exit }')
[ -n "$addr" ] || die "interface $iface does not exist or has no IPv4 address; the DHCP server needs an address in the subnet it serves"
if_ip=${addr%/*} if_prefix=${addr#*/}
[ -n "$netmask" ] || netmask=$(prefix_to_mask "$if_prefix")
prefix=$(mask_to_prefix "$netmask")
mask_int=$(ip_to_int "$netmask")
net_int=$(($(ip_to_int "$if_ip") & mask_int))
bcast_int=$((net_int | (~mask_int & 0xFFFFFFFF)))
if [ -z "$range_start" ] || [ -z "$range_end" ]; then
  ((prefix <= 24)) || usage_error "the $iface subnet is smaller than /24: give --range-start and --range-end"
  [ -n "$range_start" ] || range_start=$(int_to_ip $((net_int + 100)))
  [ -n "$range_end" ] || range_end=$(int_to_ip $((net_int + 250)))
fi
[ -n "$gateway" ] || gateway=$if_ip
if [ -z "$dns" ]; then
  dns=$(awk '$1 == "nameserver" && $2 ~ /^[0-9.]+$/ && $2 !~ /^127\./ { print $2; exit }' /etc/resolv.conf 2>/dev/null || true)
  [ -n "$dns" ] || dns=$gateway
fi
start_int=$(ip_to_int "$range_start") end_int=$(ip_to_int "$range_end")
in_subnet() { local i; i=$(ip_to_int "$1"); ((i > net_int && i < bcast_int)); }
in_subnet "$range_start" || die "--range-start $range_start is not a host address of $iface's subnet $(int_to_ip "$net_int")/$prefix"
in_subnet "$range_end" || die "--range-end $range_end is not a host address of $iface's subnet $(int_to_ip "$net_int")/$prefix"
((start_int <= end_int)) || usage_error "--range-start $range_start is after --range-end $range_end"
ifip_int=$(ip_to_int "$if_ip")
if ((ifip_int >= start_int && ifip_int <= end_int)); then
  die "the range $range_start-$range_end contains $iface's own address $if_ip"
fi

tag=nst_${iface//[^A-Za-z0-9]/_}
run mkdir -p /etc/dnsmasq.d
write_file 0644 "$conf" <<EOF
# Written by nstance's dnsmasq-test-setup.sh (dev/test only): DHCP for VMs on $iface.
# DHCP only: port=0 switches dnsmasq's DNS server off.
port=0
bind-interfaces
interface=$iface
dhcp-range=set:$tag,$range_start,$range_end,$netmask,$lease_time
dhcp-option=tag:$tag,option:router,$gateway
dhcp-option=tag:$tag,option:dns-server,$dns
dhcp-option=tag:$tag,option:domain-search,$domain
log-dhcp
EOF
changed=$WROTE

# The file is in place before the package is installed, so dnsmasq's first start already reads it
# (DNS off) instead of grabbing port 53.
installed_now=0
if ! command -v dnsmasq >/dev/null 2>&1; then
  require_cmd apt-get
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y dnsmasq
  installed_now=1
fi
run dnsmasq --test "--conf-file=$conf"
run systemctl enable dnsmasq.service
if [ "$changed$installed_now" != 00 ]; then
  run systemctl restart dnsmasq.service
else
  run systemctl start dnsmasq.service
fi
if [ "$DRY_RUN" = 1 ]; then
  log "dry-run: nothing was changed"
else
  log "DHCP on $iface: $range_start-$range_end/$prefix, router $gateway, DNS $dns, lease $lease_time"
fi
