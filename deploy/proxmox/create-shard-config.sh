#!/usr/bin/env bash
# create-shard-config.sh: write the shard configuration (config.jsonc) for a Proxmox VE cluster, check it
# with `nstance-server --validate` and upload it to the shard's object storage with
# `nstance-admin config push` (so no aws/gcloud CLI is needed).
#
# Usage: create-shard-config.sh --cluster-id ID --shard ID --storage s3|gcs|file --bucket B [options]
#        create-shard-config.sh --cluster-id ID --shard ID --output config.jsonc [options]
#        create-shard-config.sh --cluster-id ID --shards-file shards.jsonc --output DIR [options]
#
# Runs anywhere with node and the nstance commands (root is not needed). The config is uploaded to
# <prefix>shard/<shard>/config.jsonc of the bucket when --storage and --bucket are given (unless
# --no-upload), written to a file with --output, and printed on stdout when neither is asked for. It is
# always validated first; nothing is written or uploaded if validation fails. Object storage credentials
# come from the usual environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL,
# AWS_S3_USE_PATH_STYLE, GOOGLE_APPLICATION_CREDENTIALS, ...).
#
# Shard and cluster:
#   --cluster-id ID          cluster ID (lowercase letters, digits, single '-', max 32) [env NSTANCE_CLUSTER_ID]
#   --shard ID               shard ID, one per PVE cluster (same rules)
#   --region NAME            region, metadata only                                     [the shard ID]
#   --zone NAME              zone, metadata only                                       [the region]
#   --shards-file FILE       generate one config per entry of a {"shards": [{"id", "provider": {"kind":
#                            "proxmox", "region", "zone"}}]} file instead of --shard/--region/--zone;
#                            --output is then a directory receiving <shard>.jsonc files
#   --insecure-tls           skip TLS verification of the PVE API (self-signed PVE certificates)
#   --iso-storage ID         PVE storage for cloud-init ISOs (options.cloud_init_iso_storage)    [local]
#   --encryption-key-file P  secrets encryption key file on the servers          [/etc/nstance/encryption.key]
#   --encryption-key-env V   ...or the environment variable holding it on the servers (e.g. NSTANCE_ENCRYPTION_KEY)
# Addresses (five ports from --base-port: health, election, registration, operator, agent):
#   --bind-host HOST         address the servers listen on                                    [0.0.0.0]
#   --advertise-host HOST    address agents and operators reach the leader on, e.g. the keepalived VIP
#                            (--vip is an alias; a /prefix is ignored). Without it every address is
#                            advertised as ":port" and each replica advertises its own address.
#   --base-port N            first of the five ports                                           [8990]
# VMs (Proxmox template args):
#   --storage-pool ID        PVE storage for VM disks (StoragePool)                        [local-lvm]
#   --template-name NAME     PVE template to clone, looked up per node (TemplateName)  [debian-13-template]
#   --template-vmid N        ...or the template's VMID (TemplateVMID); replaces --template-name
#   --bridge NAME            network bridge (Bridge)                                           [vmbr0]
#   --vlan N                 VLAN tag 1-4094 (VLANTag)                                         [none]
#   --pool NAME              PVE resource pool (Pool)                                          [none]
#   --cores N                cores per VM (Cores)                                              [2]
#   --memory MIB             memory per VM in MiB (Memory)                                     [2048]
#   --disk-size SIZE         disk size per VM, e.g. 20G (DiskSize)                             [20G]
#   --no-start-on-boot       do not start VMs when their PVE node boots (StartOnBoot false)
#   --template NAME          name of the instance template in the config (letters and digits) [default]
#   --kind KIND              3 lowercase letters, the prefix of instance IDs                   [vmx]
#   --arch amd64|arm64       architecture of the template                                      [amd64]
#   --subnet-pool ID         name of the subnet pool holding the bridge (or bridge.vlan)       [default]
#   --userdata FILE|URL      cloud-init userdata: a local file, or an http(s) URL fetched at boot
#                            [a placeholder script]
#   --group TENANT/GROUP=N   a static group of N VMs; repeatable                     [default/workers=1]
# Output and upload:
#   --output FILE            write the config to FILE ("-" for stdout)
#   --storage s3|gcs|file    object storage of the shard
#   --bucket NAME            bucket (base directory for --storage file)
#   --prefix P               key prefix passed to nstance-admin config push                   [none]
#   --no-upload              do not upload even though --storage/--bucket are given
#   --skip-validate          do not run nstance-server --validate (not recommended)
#   --dry-run                print the config and the commands that would write or upload it, prefixed
#                            "[dry-run] ", and change nothing. The config is still generated into a
#                            temporary file and validated (read-only) so the plan is accurate.
#   -h, --help               show this help
#
# Commands: nstance-server and nstance-admin are taken from PATH; NSTANCE_SERVER_BIN / NSTANCE_ADMIN_BIN
# override them (split on spaces, e.g. NSTANCE_SERVER_BIN="node /opt/nstance/bin/nstance-server.js").
#
# Examples:
#   ./create-shard-config.sh --cluster-id acme --shard pve-a --advertise-host 10.0.0.100 \
#       --bridge vmbr1 --group default/workers=3 --storage s3 --bucket nstance
#   ./create-shard-config.sh --cluster-id acme --shard pve-a --output config.jsonc
#   ./create-shard-config.sh --cluster-id acme --shards-file shards.jsonc --storage gcs --bucket nstance
#
# Exit status: 0 done, 1 failure (including a config that does not validate), 2 bad usage.
set -euo pipefail

LOG_TAG=create-shard-config
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

cluster_id=${NSTANCE_CLUSTER_ID-} shard="" region="" zone="" shards_file=""
insecure_tls=false iso_storage=local key_file=/etc/nstance/encryption.key key_env=""
bind_host=0.0.0.0 advertise_host="" base_port=8990
storage_pool=local-lvm template_name=debian-13-template template_vmid="" bridge=vmbr0 vlan="" pool=""
cores=2 memory=2048 disk_size=20G start_on_boot=true tpl=default kind=vmx arch=amd64 subnet_pool=default
userdata="" groups=()
output="" storage="" bucket="" prefix="" no_upload=0 skip_validate=0

split_eq "$@"
set -- "${SPLIT_ARGS[@]+"${SPLIT_ARGS[@]}"}"
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) show_help; exit 0 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --cluster-id) need_value "$1" $# "${2-}"; cluster_id=$2; shift 2 ;;
    --shard) need_value "$1" $# "${2-}"; shard=$2; shift 2 ;;
    --region) need_value "$1" $# "${2-}"; region=$2; shift 2 ;;
    --zone) need_value "$1" $# "${2-}"; zone=$2; shift 2 ;;
    --shards-file) need_value "$1" $# "${2-}"; shards_file=$2; shift 2 ;;
    --insecure-tls) insecure_tls=true; shift ;;
    --iso-storage) need_value "$1" $# "${2-}"; iso_storage=$2; shift 2 ;;
    --encryption-key-file) need_value "$1" $# "${2-}"; key_file=$2; shift 2 ;;
    --encryption-key-env) need_value "$1" $# "${2-}"; key_env=$2; shift 2 ;;
    --bind-host) need_value "$1" $# "${2-}"; bind_host=$2; shift 2 ;;
    --advertise-host | --vip) need_value "$1" $# "${2-}"; advertise_host=${2%/*}; shift 2 ;;
    --base-port) need_value "$1" $# "${2-}"; base_port=$2; shift 2 ;;
    --storage-pool) need_value "$1" $# "${2-}"; storage_pool=$2; shift 2 ;;
    --template-name) need_value "$1" $# "${2-}"; template_name=$2; shift 2 ;;
    --template-vmid) need_value "$1" $# "${2-}"; template_vmid=$2; shift 2 ;;
    --bridge) need_value "$1" $# "${2-}"; bridge=$2; shift 2 ;;
    --vlan) need_value "$1" $# "${2-}"; vlan=$2; shift 2 ;;
    --pool) need_value "$1" $# "${2-}"; pool=$2; shift 2 ;;
    --cores) need_value "$1" $# "${2-}"; cores=$2; shift 2 ;;
    --memory) need_value "$1" $# "${2-}"; memory=$2; shift 2 ;;
    --disk-size) need_value "$1" $# "${2-}"; disk_size=$2; shift 2 ;;
    --no-start-on-boot) start_on_boot=false; shift ;;
    --template) need_value "$1" $# "${2-}"; tpl=$2; shift 2 ;;
    --kind) need_value "$1" $# "${2-}"; kind=$2; shift 2 ;;
    --arch) need_value "$1" $# "${2-}"; arch=$2; shift 2 ;;
    --subnet-pool) need_value "$1" $# "${2-}"; subnet_pool=$2; shift 2 ;;
    --userdata) need_value "$1" $# "${2-}"; userdata=$2; shift 2 ;;
    --group) need_value "$1" $# "${2-}"; groups+=("$2"); shift 2 ;;
    --output) need_value "$1" $# "${2-}"; output=$2; shift 2 ;;
    --storage) need_value "$1" $# "${2-}"; storage=$2; shift 2 ;;
    --bucket) need_value "$1" $# "${2-}"; bucket=$2; shift 2 ;;
    --prefix) need_value "$1" $# "${2-}"; prefix=$2; shift 2 ;;
    --no-upload) no_upload=1; shift ;;
    --skip-validate) skip_validate=1; shift ;;
    *) usage_error "unknown option: $1" ;;
  esac
done

# Identifier rules of the shard config (cluster, shard, tenant, group and subnet pool IDs).
is_ident() { [[ $1 =~ ^[a-z0-9]+(-[a-z0-9]+)*$ ]] && [ ${#1} -le 32 ]; }
is_host() { [[ $1 =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ && $1 != *..* ]] || [[ $1 =~ ^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*$ ]]; }
is_meta() { [[ $1 =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]]; }

[ -n "$cluster_id" ] || usage_error "--cluster-id is required (or set NSTANCE_CLUSTER_ID)"
is_ident "$cluster_id" || usage_error "--cluster-id must be lowercase letters and digits with single '-' between them, at most 32 characters; got '$cluster_id'"
if [ -n "$shards_file" ]; then
  [ -z "$shard$region$zone" ] || usage_error "--shards-file replaces --shard, --region and --zone"
  [ -f "$shards_file" ] || usage_error "--shards-file $shards_file does not exist"
else
  [ -n "$shard" ] || usage_error "--shard is required (or --shards-file)"
fi
[ -z "$key_env" ] || [[ $key_env =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || usage_error "--encryption-key-env must be an environment variable name, got '$key_env'"
[[ $key_file == /* ]] || usage_error "--encryption-key-file must be an absolute path, got '$key_file'"
[[ $iso_storage =~ ^[A-Za-z][A-Za-z0-9._-]*$ ]] || usage_error "--iso-storage must be a PVE storage ID, got '$iso_storage'"
is_host "$bind_host" || usage_error "--bind-host must be an IP address or host name, got '$bind_host'"
[ -z "$advertise_host" ] || is_host "$advertise_host" || usage_error "--advertise-host must be an IP address or host name, got '$advertise_host'"
if ! [[ $base_port =~ ^[1-9][0-9]{0,4}$ ]] || [ "$base_port" -gt 65531 ]; then usage_error "--base-port must be a port from 1 to 65531, got '$base_port'"; fi
[[ $storage_pool =~ ^[A-Za-z][A-Za-z0-9._-]*$ ]] || usage_error "--storage-pool must be a PVE storage ID like local-lvm, got '$storage_pool'"
if [ -n "$template_vmid" ]; then
  [[ $template_vmid =~ ^[1-9][0-9]{2,8}$ ]] || usage_error "--template-vmid must be a VMID (100-999999999), got '$template_vmid'"
fi
[[ $template_name =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]] || usage_error "--template-name must be a PVE VM name like debian-13-template, got '$template_name'"
[[ $bridge =~ ^[A-Za-z0-9._-]{1,15}$ ]] || usage_error "--bridge must be an interface name like vmbr0, got '$bridge'"
if [ -n "$vlan" ]; then
  if ! [[ $vlan =~ ^[1-9][0-9]{0,3}$ ]] || [ "$vlan" -gt 4094 ]; then usage_error "--vlan must be a VLAN tag from 1 to 4094, got '$vlan'"; fi
fi
[ -z "$pool" ] || [[ $pool =~ ^[A-Za-z0-9._-]+$ ]] || usage_error "--pool must be a PVE pool name, got '$pool'"
[[ $cores =~ ^[1-9][0-9]{0,2}$ ]] || usage_error "--cores must be a number from 1 to 999, got '$cores'"
[[ $memory =~ ^[1-9][0-9]{1,6}$ ]] || usage_error "--memory must be a number of MiB like 2048, got '$memory'"
[[ $disk_size =~ ^[1-9][0-9]*[KMGT]?$ ]] || usage_error "--disk-size must look like 20G, got '$disk_size'"
[[ $tpl =~ ^[A-Za-z0-9]+$ ]] || usage_error "--template must be letters and digits only, got '$tpl'"
[[ $kind =~ ^[a-z]{3}$ ]] || usage_error "--kind must be exactly 3 lowercase letters, got '$kind'"
[[ $arch == amd64 || $arch == arm64 ]] || usage_error "--arch must be amd64 or arm64, got '$arch'"
is_ident "$subnet_pool" || usage_error "--subnet-pool must be an identifier like default, got '$subnet_pool'"
if [[ -n $userdata && $userdata != http://* && $userdata != https://* && ! -f $userdata ]]; then
  usage_error "--userdata must be an existing file or an http(s) URL, got '$userdata'"
fi
[ ${#groups[@]} -gt 0 ] || groups=(default/workers=1)
seen_groups=" "
for g in "${groups[@]}"; do
  [[ $g =~ ^([^/=]+)/([^/=]+)=([0-9]{1,5})$ ]] || usage_error "--group must look like TENANT/GROUP=SIZE, e.g. default/workers=3; got '$g'"
  g_tenant=${BASH_REMATCH[1]} g_name=${BASH_REMATCH[2]} g_size=${BASH_REMATCH[3]}
  is_ident "$g_tenant" || usage_error "--group $g: tenant must be lowercase letters and digits with single '-', at most 32 characters"
  is_ident "$g_name" || usage_error "--group $g: group must be lowercase letters and digits with single '-', at most 32 characters"
  [ "$((10#$g_size))" -le 10000 ] || usage_error "--group $g: size must be at most 10000"
  [[ $seen_groups != *" $g_tenant/$g_name "* ]] || usage_error "--group $g_tenant/$g_name is given twice"
  seen_groups+="$g_tenant/$g_name "
done
case $storage in "" | s3 | gcs | file) ;; *) usage_error "--storage must be s3, gcs or file, got '$storage'" ;; esac
if [ -n "$storage" ] && [ -z "$bucket" ]; then usage_error "--storage needs --bucket"; fi
if [ -n "$bucket" ] && [ -z "$storage" ]; then usage_error "--bucket needs --storage (s3, gcs or file)"; fi
[ -z "$prefix" ] || [[ $prefix =~ ^[A-Za-z0-9._/-]+$ ]] || usage_error "--prefix must be letters, digits, '.', '_', '-' and '/', got '$prefix'"
upload=0
if [ -n "$storage" ] && [ "$no_upload" = 0 ]; then upload=1; fi
if [ -n "$shards_file" ]; then
  [ "$output" != - ] || usage_error "with --shards-file, --output must be a directory"
  [ -n "$output" ] || [ "$upload" = 1 ] || usage_error "--shards-file needs --output DIR and/or --storage and --bucket"
elif [ -d "$output" ]; then
  usage_error "--output $output is a directory; give a file name (directories are for --shards-file)"
fi

require_cmd node
read -ra server_cmd <<<"${NSTANCE_SERVER_BIN:-nstance-server}"
read -ra admin_cmd <<<"${NSTANCE_ADMIN_BIN:-nstance-admin}"
[ "$skip_validate" = 1 ] || command -v "${server_cmd[0]}" >/dev/null 2>&1 ||
  die "'${server_cmd[0]}' not found: install nstance-server, set NSTANCE_SERVER_BIN, or pass --skip-validate"
[ "$upload" = 0 ] || command -v "${admin_cmd[0]}" >/dev/null 2>&1 ||
  die "'${admin_cmd[0]}' not found: install nstance-admin or set NSTANCE_ADMIN_BIN (needed to upload)"

# The generator gets every value through the environment and builds the document with JSON.stringify,
# so no user input is ever spliced into JSON text.
# shellcheck disable=SC2016 # JavaScript template literals, not shell expansions
GEN_JS='
const fs = require("node:fs")
const fail = (msg) => { process.stderr.write(`error: ${msg}\n`); process.exit(1) }
// JSONC: drop comments, then trailing commas, outside strings; then JSON.parse.
const scan = (text, onOutside) => {
  let out = "", i = 0, inString = false
  while (i < text.length) {
    const c = text[i]
    if (inString) {
      out += c
      if (c === "\\") { out += text[i + 1] ?? ""; i += 2; continue }
      if (c === "\"") inString = false
      i++
    } else if (c === "\"") { inString = true; out += c; i++ }
    else { const [emit, next] = onOutside(text, i); out += emit; i = next }
  }
  return out
}
const withoutComments = (text) => scan(text, (t, i) => {
  if (t[i] === "/" && t[i + 1] === "/") { const end = t.indexOf("\n", i); return ["", end < 0 ? t.length : end] }
  if (t[i] === "/" && t[i + 1] === "*") { const end = t.indexOf("*/", i + 2); return [" ", end < 0 ? t.length : end + 2] }
  return [t[i], i + 1]
})
const withoutTrailingCommas = (text) => scan(text, (t, i) => {
  if (t[i] !== ",") return [t[i], i + 1]
  let j = i + 1
  while (j < t.length && /\s/.test(t[j])) j++
  return [t[j] === "}" || t[j] === "]" ? "" : ",", i + 1]
})
const stripJsonc = (text) => withoutTrailingCommas(withoutComments(text))
const e = process.env
if (process.argv[1] === "shards") {
  const file = process.argv[2]
  let doc
  try { doc = JSON.parse(stripJsonc(fs.readFileSync(file, "utf8"))) } catch (err) { fail(`${file}: not valid JSON(C): ${err.message}`) }
  if (doc === null || typeof doc !== "object" || !Array.isArray(doc.shards) || doc.shards.length === 0)
    fail(`${file}: expected {"shards": [...]} with at least one entry`)
  const ids = new Set()
  doc.shards.forEach((s, i) => {
    const at = `${file}: shards[${i}]`
    if (s === null || typeof s !== "object") fail(`${at} must be an object`)
    if (typeof s.id !== "string" || s.id === "") fail(`${at}.id must be a non-empty string`)
    if (ids.has(s.id)) fail(`${at}.id "${s.id}" appears twice`)
    ids.add(s.id)
    const p = s.provider
    if (p === null || typeof p !== "object") fail(`${at}.provider must be an object`)
    if (p.kind !== "proxmox") fail(`${at}.provider.kind must be "proxmox", got ${JSON.stringify(p.kind)}`)
    for (const k of ["region", "zone"])
      if (typeof p[k] !== "string" || p[k] === "") fail(`${at}.provider.${k} must be a non-empty string`)
    for (const v of [s.id, p.region, p.zone]) if (/[\t\r\n]/.test(v)) fail(`${at}: values may not contain tabs or newlines`)
    process.stdout.write(`${s.id}\t${p.region}\t${p.zone}\n`)
  })
  process.exit(0)
}
const hostPort = (host, port) => (host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`)
const base = Number(e.NSC_BASE_PORT)
const names = ["health_addr", "election_addr", "registration_addr", "operator_addr", "agent_addr"]
const bind = {}, advertise = {}
names.forEach((name, i) => {
  bind[name] = hostPort(e.NSC_BIND_HOST, base + i)
  // health and election are per replica; the other three go to the leader, i.e. the shared address.
  advertise[name] = i >= 2 && e.NSC_ADVERTISE_HOST ? hostPort(e.NSC_ADVERTISE_HOST, base + i) : `:${base + i}`
})
const defaultArgs = { StoragePool: e.NSC_STORAGE_POOL }
if (e.NSC_TEMPLATE_VMID) defaultArgs.TemplateVMID = Number(e.NSC_TEMPLATE_VMID)
else defaultArgs.TemplateName = e.NSC_TEMPLATE_NAME
defaultArgs.Bridge = e.NSC_BRIDGE
if (e.NSC_VLAN) defaultArgs.VLANTag = Number(e.NSC_VLAN)
defaultArgs.StartOnBoot = e.NSC_START_ON_BOOT === "true"
if (e.NSC_POOL) defaultArgs.Pool = e.NSC_POOL
let userdata
if (/^https?:\/\//.test(e.NSC_USERDATA)) userdata = { source: "url", content: e.NSC_USERDATA }
else if (e.NSC_USERDATA) userdata = { content: fs.readFileSync(e.NSC_USERDATA, "utf8") }
else userdata = { content: "#!/bin/sh\n# Placeholder: replace with the nstance agent bootstrap for your VMs.\necho \"nstance: instance started\"\n" }
const groups = {}
for (const spec of e.NSC_GROUPS.split(" ").filter(Boolean)) {
  const [, tenant, group, size] = /^([^/]+)\/([^=]+)=(\d+)$/.exec(spec)
  groups[tenant] ??= {}
  groups[tenant][group] = { template: e.NSC_TPL, size: Number(size) }
}
const config = {
  cluster: {
    id: e.NSC_CLUSTER_ID,
    secrets: {
      provider: "object-storage",
      encryption_key: e.NSC_KEY_ENV ? { provider: "env", source: e.NSC_KEY_ENV } : { provider: "file", source: e.NSC_KEY_FILE }
    }
  },
  shard: {
    id: e.NSC_SHARD,
    infra: {
      provider: "proxmox",
      region: e.NSC_REGION,
      zone: e.NSC_ZONE,
      options: { insecure_tls: e.NSC_INSECURE_TLS === "true", cloud_init_iso_storage: e.NSC_ISO_STORAGE }
    },
    bind,
    advertise,
    subnet_pools: { [e.NSC_SUBNET_POOL]: [e.NSC_VLAN ? `${e.NSC_BRIDGE}.${e.NSC_VLAN}` : e.NSC_BRIDGE] }
  },
  defaults: { args: defaultArgs },
  templates: {
    [e.NSC_TPL]: {
      kind: e.NSC_KIND,
      arch: e.NSC_ARCH,
      subnet_pool: e.NSC_SUBNET_POOL,
      args: { Cores: Number(e.NSC_CORES), Memory: Number(e.NSC_MEMORY), DiskSize: e.NSC_DISK_SIZE },
      userdata
    }
  },
  groups
}
process.stdout.write(
  "// nstance shard configuration for the Proxmox VE cluster of shard \"" + e.NSC_SHARD + "\".\n" +
  "// Generated by create-shard-config.sh; validate with: nstance-server --validate FILE\n" +
  JSON.stringify(config, null, 2) + "\n")
'

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# generate_one SHARD REGION ZONE DEST: generate, validate, write and/or upload one shard config.
check_shard() {
  is_ident "$1" || die "shard ID must be lowercase letters and digits with single '-', at most 32 characters; got '$1'"
  is_meta "$2" || die "region must be 1-64 letters, digits, '.', '_' or '-'; got '$2'"
  is_meta "$3" || die "zone must be 1-64 letters, digits, '.', '_' or '-'; got '$3'"
}
generate_one() {
  local sh=$1 rg=$2 zn=$3 dest=$4 tmp
  check_shard "$sh" "$rg" "$zn"
  tmp=$work/$sh.jsonc
  NSC_CLUSTER_ID=$cluster_id NSC_SHARD=$sh NSC_REGION=$rg NSC_ZONE=$zn NSC_INSECURE_TLS=$insecure_tls \
    NSC_ISO_STORAGE=$iso_storage NSC_KEY_FILE=$key_file NSC_KEY_ENV=$key_env NSC_BIND_HOST=$bind_host \
    NSC_ADVERTISE_HOST=$advertise_host NSC_BASE_PORT=$base_port NSC_STORAGE_POOL=$storage_pool \
    NSC_TEMPLATE_NAME=$template_name NSC_TEMPLATE_VMID=$template_vmid NSC_BRIDGE=$bridge NSC_VLAN=$vlan \
    NSC_POOL=$pool NSC_CORES=$cores NSC_MEMORY=$memory NSC_DISK_SIZE=$disk_size \
    NSC_START_ON_BOOT=$start_on_boot NSC_TPL=$tpl NSC_KIND=$kind NSC_ARCH=$arch \
    NSC_SUBNET_POOL=$subnet_pool NSC_USERDATA=$userdata NSC_GROUPS="${groups[*]}" \
    node -e "$GEN_JS" generate >"$tmp"
  if [ "$skip_validate" = 1 ]; then
    warn "shard $sh: not validated (--skip-validate)"
  elif ! "${server_cmd[@]}" --validate "$tmp" >&2; then
    die "the generated config for shard $sh did not pass '${server_cmd[*]} --validate' (see above); nothing was written or uploaded"
  fi
  if [ "$dest" = - ]; then
    cat "$tmp"
  elif [ -n "$dest" ]; then
    write_file 0644 "$dest" <"$tmp"
  fi
  if [ "$upload" = 1 ]; then
    local src=$tmp args=(config push)
    [ -z "$dest" ] || [ "$dest" = - ] || src=$dest
    args+=("$src" --storage "$storage" --bucket "$bucket" --shard "$sh")
    [ -z "$prefix" ] || args+=(--prefix "$prefix")
    run "${admin_cmd[@]}" "${args[@]}"
    [ "$DRY_RUN" = 1 ] || log "uploaded shard $sh config to $storage bucket $bucket (key ${prefix}shard/$sh/config.jsonc)"
  fi
}

if [ -n "$shards_file" ]; then
  list=$(node -e "$GEN_JS" shards "$shards_file") || exit 1
  # Check every entry before generating any, so a bad last entry does not leave half the shards done.
  while IFS=$'\t' read -r sh rg zn; do check_shard "$sh" "$rg" "$zn"; done <<<"$list"
  if [ -n "$output" ]; then
    [ -d "$output" ] || run mkdir -p "$output"
  fi
  while IFS=$'\t' read -r sh rg zn; do
    generate_one "$sh" "$rg" "$zn" "${output:+$output/$sh.jsonc}"
  done <<<"$list"
else
  dest=$output
  if [ -z "$dest" ] && [ "$upload" = 0 ]; then dest=-; fi
  generate_one "$shard" "${region:-$shard}" "${zone:-${region:-$shard}}" "$dest"
fi
