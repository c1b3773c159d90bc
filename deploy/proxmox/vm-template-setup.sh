#!/usr/bin/env bash
# vm-template-setup.sh: turn a cloud image into a Proxmox VE VM template that nstance clones VMs from.
#
# Usage: vm-template-setup.sh [options]
#
# Run as root on each PVE node (or on one node only when --storage is shared storage). Safe to re-run:
#   - if a template with --template-name already exists on this node, nothing is done;
#   - the image is downloaded only when it is not already in --image-dir (to a temporary file, moved into
#     place only after it downloaded completely and its checksum matched);
#   - the VMID is the first free one from --min-vmid upwards, cluster-wide
#     (pvesh get /cluster/resources --type vm);
#   - if a step fails after `qm create`, the half-built VM is destroyed again.
#
# Options:
#   --template-name NAME  template (VM) name; nstance's TemplateName arg     [debian-13-template]
#   --image-url URL       cloud image (qcow2/raw) to import
#                         [https://cloud.debian.org/images/cloud/trixie/latest/debian-13-genericcloud-amd64.qcow2]
#   --image-hash SPEC     how to verify the image: sha256:HEX, sha512:HEX, a checksum file (https://… or
#                         /path, e.g. SHA512SUMS), or "none". Default "auto": the SHA512SUMS next to the image
#                         for cloud.debian.org images, no verification (with a warning) for other URLs
#   --image-dir DIR       where the image is kept (--iso-dir is an alias) [/var/lib/vz/template/iso]
#   --storage ID          PVE storage for the template disk and cloud-init drive     [local-lvm]
#   --bridge NAME         bridge for net0                                             [vmbr0]
#   --min-vmid N          lowest VMID to use; the first free one from here is taken   [9000]
#   --memory MIB          template memory in MiB (clones get nstance's Memory arg)    [2048]
#   --cores N             template cores (clones get nstance's Cores arg)             [2]
#   --ci-user NAME        cloud-init default user, "" to leave unset                  [debian]
#   --ip-config CFG       cloud-init ipconfig0, "" to leave unset                     [ip=dhcp]
#   --dry-run             print every command that would change something, one per line prefixed
#                         "[dry-run] ", and change nothing. Read-only probes (qm list, qm config,
#                         pvesh get, pveversion, reading an already downloaded image) still run so that
#                         the plan is accurate; root is not required.
#   -h, --help            show this help
#
# Requires: Proxmox VE 8.0 or newer (qm, pvesh, pveversion), curl, sha256sum/sha512sum.
#
# Examples:
#   ./vm-template-setup.sh
#   ./vm-template-setup.sh --storage ceph-pool --bridge vmbr1 --min-vmid 9100
#   ./vm-template-setup.sh --dry-run
#
# Exit status: 0 done or nothing to do, 1 failure, 2 bad usage.
set -euo pipefail

LOG_TAG=vm-template-setup
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

DEFAULT_IMAGE_URL=https://cloud.debian.org/images/cloud/trixie/latest/debian-13-genericcloud-amd64.qcow2
template_name=debian-13-template
image_url=$DEFAULT_IMAGE_URL
image_hash=auto
image_dir=/var/lib/vz/template/iso
storage=local-lvm
bridge=vmbr0
min_vmid=9000
memory=2048
cores=2
ci_user=debian
ip_config=ip=dhcp

split_eq "$@"
set -- "${SPLIT_ARGS[@]+"${SPLIT_ARGS[@]}"}"
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) show_help; exit 0 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --template-name) need_value "$1" $# "${2-}"; template_name=$2; shift 2 ;;
    --image-url) need_value "$1" $# "${2-}"; image_url=$2; shift 2 ;;
    --image-hash) need_value "$1" $# "${2-}"; image_hash=$2; shift 2 ;;
    --image-dir | --iso-dir) need_value "$1" $# "${2-}"; image_dir=$2; shift 2 ;;
    --storage) need_value "$1" $# "${2-}"; storage=$2; shift 2 ;;
    --bridge) need_value "$1" $# "${2-}"; bridge=$2; shift 2 ;;
    --min-vmid) need_value "$1" $# "${2-}"; min_vmid=$2; shift 2 ;;
    --memory) need_value "$1" $# "${2-}"; memory=$2; shift 2 ;;
    --cores) need_value "$1" $# "${2-}"; cores=$2; shift 2 ;;
    --ci-user) need_value "$1" $# "${2-}"; ci_user=$2; shift 2 ;;
    --ip-config) need_value "$1" $# "${2-}"; ip_config=$2; shift 2 ;;
    *) usage_error "unknown option: $1" ;;
  esac
done

# Validate everything before touching anything; values end up in qm arguments and file paths.
[[ $template_name =~ ^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$ ]] ||
  usage_error "--template-name must be a DNS-style name like debian-13-template (letters, digits, '-', '.'), got '$template_name'"
[[ $image_url =~ ^https?://[^[:space:]]+/([A-Za-z0-9._+-]+)$ ]] ||
  usage_error "--image-url must be an http(s) URL ending in a file name, got '$image_url'"
image_file=${BASH_REMATCH[1]}
[[ $image_dir == /* ]] || usage_error "--image-dir must be an absolute path, got '$image_dir'"
[[ $storage =~ ^[A-Za-z][A-Za-z0-9._-]*$ ]] || usage_error "--storage must be a PVE storage ID like local-lvm, got '$storage'"
[[ $bridge =~ ^[A-Za-z0-9._-]{1,15}$ ]] || usage_error "--bridge must be an interface name like vmbr0, got '$bridge'"
[[ $min_vmid =~ ^[1-9][0-9]{2,8}$ ]] || usage_error "--min-vmid must be a number from 100 to 999999999, got '$min_vmid'"
[[ $memory =~ ^[1-9][0-9]{1,6}$ ]] || usage_error "--memory must be a number of MiB from 10, like 2048; got '$memory'"
[[ $cores =~ ^[1-9][0-9]{0,2}$ ]] || usage_error "--cores must be a number from 1 to 999, got '$cores'"
[[ $ci_user =~ ^([a-z_][a-z0-9_-]{0,31})?$ ]] || usage_error "--ci-user must be a Linux user name (or \"\"), got '$ci_user'"
[[ $ip_config =~ ^[A-Za-z0-9=,./:]*$ ]] || usage_error "--ip-config must look like ip=dhcp (or \"\"), got '$ip_config'"

# Resolve --image-hash into (algorithm, expected hex) or a checksum file to look the image up in.
hash_algo="" hash_hex="" hash_source=""
case $image_hash in
  none | "") ;;
  auto)
    if [[ $image_url == https://cloud.debian.org/* ]]; then
      hash_source="${image_url%/*}/SHA512SUMS"
    else
      warn "no --image-hash given for a non-Debian image: the image will not be verified"
    fi
    ;;
  sha256:*) hash_algo=sha256 hash_hex=${image_hash#sha256:} ;;
  sha512:*) hash_algo=sha512 hash_hex=${image_hash#sha512:} ;;
  https://* | http://* | /*) hash_source=$image_hash ;;
  *) usage_error "--image-hash must be sha256:HEX, sha512:HEX, a checksum file URL or path, or none; got '$image_hash'" ;;
esac
if [ -n "$hash_algo" ]; then
  [ "$hash_algo" = sha256 ] && len=64 || len=128
  [[ $hash_hex =~ ^[0-9a-fA-F]{$len}$ ]] || usage_error "--image-hash $hash_algo: needs $len hex digits"
fi

require_root
require_cmd qm pvesh pveversion curl sha256sum sha512sum

# Two runs on one node at once would pick the same VMID and race on the image download.
if [ "$DRY_RUN" = 0 ]; then
  if command -v flock >/dev/null 2>&1 && { exec 9>>/run/lock/nstance-vm-template-setup.lock; } 2>/dev/null; then
    flock -n 9 || die "another vm-template-setup.sh is running on this node"
  else
    warn "cannot lock /run/lock/nstance-vm-template-setup.lock; make sure no other run is in progress"
  fi
fi

pve_version=$(pveversion | sed -n 's|^pve-manager/\([0-9][0-9.]*\).*|\1|p')
[ -n "$pve_version" ] || die "could not read the PVE version from 'pveversion'"
[ "${pve_version%%.*}" -ge 8 ] || die "Proxmox VE 8.0 or newer is needed (qm set import-from), this node runs $pve_version"

# 1. Idempotency: an existing template of that name on this node means there is nothing to do. A
# non-template VM with that name is most likely a run that was killed half-way: stop rather than guess.
vm_list=$(qm list)
while read -r vmid name _; do
  [ "$name" = "$template_name" ] || continue
  vm_config=$(qm config "$vmid")
  if grep -qx 'template: 1' <<<"$vm_config"; then
    log "template '$template_name' already exists as VMID $vmid on this node; nothing to do"
    log "use it in the shard config as \"TemplateName\": \"$template_name\" (or \"TemplateVMID\": $vmid)"
    exit 0
  fi
  die "VM $vmid is named '$template_name' but is not a template (left over from an interrupted run?); inspect it with 'qm config $vmid', remove it with 'qm destroy $vmid --purge', then re-run"
done < <(awk 'NR > 1 { print $1, $2 }' <<<"$vm_list")

# 2. The image: download only when absent; verify before it is moved into place.
image_path=$image_dir/$image_file

expected_hash() { # prints "algo hex" for the image, from --image-hash or the checksum file
  if [ -n "$hash_algo" ]; then
    printf '%s %s\n' "$hash_algo" "$hash_hex"
    return 0
  fi
  local sums line hex
  if [[ $hash_source == /* ]]; then
    sums=$(cat "$hash_source") || die "cannot read checksum file $hash_source"
  else
    sums=$(curl -fsSL --retry 3 "$hash_source") || die "cannot download checksum file $hash_source"
  fi
  # Lines look like "<hex>  <file>", "<hex> *<file>" or "<hex>  ./<file>".
  line=$(printf '%s\n' "$sums" | tr -d '\r' | awk -v f="$image_file" '$2 == f || $2 == "*" f || $2 == "./" f { print $1; exit }')
  [ -n "$line" ] || die "$image_file is not listed in $hash_source"
  hex=$line
  case ${#hex} in
    64) printf 'sha256 %s\n' "$hex" ;;
    128) printf 'sha512 %s\n' "$hex" ;;
    *) die "checksum for $image_file in $hash_source is neither sha256 nor sha512" ;;
  esac
}
verify_image() { # verify_image FILE: dies on mismatch
  [ -n "$hash_algo$hash_source" ] || return 0
  local algo hex actual expected
  expected=$(expected_hash)
  read -r algo hex <<<"$expected"
  actual=$("${algo}sum" "$1" | awk '{ print $1 }')
  [ "${actual,,}" = "${hex,,}" ] || die "checksum mismatch for $1 ($algo): expected $hex, got $actual"
  log "$algo checksum of ${1##*/} verified"
}

if [ -f "$image_path" ]; then
  log "image already present: $image_path (not downloading)"
  verify_image "$image_path"
else
  if [ "$DRY_RUN" = 1 ]; then
    run mkdir -p "$image_dir"
    run curl -fSL --retry 3 -o "$image_path.part" "$image_url"
    [ -z "$hash_algo$hash_source" ] || printf '[dry-run] verify %s against %s\n' "$image_path.part" "${hash_source:-$hash_algo:$hash_hex}"
    run mv -f "$image_path.part" "$image_path"
  else
    run mkdir -p "$image_dir"
    part=$(mktemp "$image_path.part.XXXXXX")
    trap 'rm -f "$part"' EXIT
    run curl -fSL --retry 3 -o "$part" "$image_url"
    verify_image "$part"
    chmod 0644 "$part"
    run mv -f "$part" "$image_path"
    trap - EXIT
  fi
fi

# 3. First free VMID from --min-vmid, cluster-wide (VMIDs are unique across the cluster, not per node).
resources=$(pvesh get /cluster/resources --type vm --output-format json)
taken=" $(grep -o '"vmid"[[:space:]]*:[[:space:]]*[0-9]*' <<<"$resources" | grep -o '[0-9]*$' | tr '\n' ' ' || true) "
vmid=$min_vmid
while [[ $taken == *" $vmid "* ]]; do vmid=$((vmid + 1)); done
[ "$vmid" -le 999999999 ] || die "no free VMID at or above $min_vmid"
log "creating template '$template_name' as VMID $vmid (storage $storage, bridge $bridge)"

# 4. Build the VM; if any step fails after qm create, destroy it so a re-run starts clean.
created=""
cleanup_vm() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ -n "$created" ]; then
    warn "a step failed; destroying the incomplete VM $created"
    qm destroy "$created" --purge >&2 || warn "could not destroy VM $created; remove it with 'qm destroy $created --purge'"
  fi
}
[ "$DRY_RUN" = 1 ] || trap cleanup_vm EXIT
trap 'exit 130' INT TERM

run qm create "$vmid" --name "$template_name" --memory "$memory" --cores "$cores" \
  --net0 "virtio,bridge=$bridge" --scsihw virtio-scsi-pci
created=$vmid
run qm set "$vmid" --scsi0 "$storage:0,import-from=$image_path"
run qm set "$vmid" --ide2 "$storage:cloudinit"
run qm set "$vmid" --boot order=scsi0
run qm set "$vmid" --serial0 socket --vga serial0
run qm set "$vmid" --agent enabled=1
[ -z "$ci_user" ] || run qm set "$vmid" --ciuser "$ci_user"
[ -z "$ip_config" ] || run qm set "$vmid" --ipconfig0 "$ip_config"
run qm template "$vmid"
created=""

if [ "$DRY_RUN" = 1 ]; then
  log "dry-run: nothing was changed"
else
  log "template '$template_name' created as VMID $vmid"
  log "use it in the shard config as \"TemplateName\": \"$template_name\" (or \"TemplateVMID\": $vmid)"
fi
