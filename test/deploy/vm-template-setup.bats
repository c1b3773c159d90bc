#!/usr/bin/env bats
# vm-template-setup.sh against stub qm/pvesh/pveversion/curl: the exact qm sequence, idempotent skips,
# image download and checksum handling, the cleanup of a half-built VM, and usage errors.
bats_require_minimum_version 1.5.0
load helpers

URL=https://cloud.debian.org/images/cloud/trixie/latest/debian-13-genericcloud-amd64.qcow2

setup() {
  setup_stubs
  ISO=$BATS_TEST_TMPDIR/iso
  IMG=$ISO/debian-13-genericcloud-amd64.qcow2
  # The checksum file lists the bytes the curl stub writes for a download of $URL.
  printf '%s  debian-13-genericcloud-amd64.qcow2\n%s  other.qcow2\n' \
    "$(printf 'image bytes from %s\n' "$URL" | sha512sum | cut -d' ' -f1)" "$(printf x | sha512sum | cut -d' ' -f1)" \
    >"$STUB_STATE/SHA512SUMS"
}

qm_sequence() { # qm_sequence VMID STORAGE BRIDGE: the guide's template sequence
  cat <<EOS
qm create $1 --name debian-13-template --memory 2048 --cores 2 --net0 virtio,bridge=$3 --scsihw virtio-scsi-pci
qm set $1 --scsi0 $2:0,import-from=$IMG
qm set $1 --ide2 $2:cloudinit
qm set $1 --boot order=scsi0
qm set $1 --serial0 socket --vga serial0
qm set $1 --agent enabled=1
qm set $1 --ciuser debian
qm set $1 --ipconfig0 ip=dhcp
qm template $1
EOS
}

@test "dry-run with defaults plans the download and the guide's qm sequence, changing nothing" {
  run --separate-stderr "$DEPLOY/vm-template-setup.sh" --dry-run --image-dir "$ISO"
  expect_status 0
  expect_lines "[dry-run] mkdir -p $ISO
[dry-run] curl -fSL --retry 3 -o $IMG.part $URL
[dry-run] verify $IMG.part against https://cloud.debian.org/images/cloud/trixie/latest/SHA512SUMS
[dry-run] mv -f $IMG.part $IMG
$(qm_sequence 9000 local-lvm vmbr0 | sed 's/^/[dry-run] /')" "$output"
  # Only read-only probes ran.
  expect_lines "pveversion 
qm list
pvesh get /cluster/resources --type vm --output-format json" "$(stub_calls)"
  [ ! -e "$ISO" ]
}

@test "an existing template of that name on this node means nothing to do" {
  printf '      VMID NAME                 STATUS     MEM(MB)    BOOTDISK(GB) PID\n       100 web1                 running    2048              20.00 1234\n      9001 debian-13-template   stopped    2048               3.00 0\n' >"$STUB_STATE/qm-list"
  printf 'boot: order=scsi0\nname: debian-13-template\ntemplate: 1\n' >"$STUB_STATE/qm-config-9001"
  run --separate-stderr "$DEPLOY/vm-template-setup.sh" --dry-run --image-dir "$ISO"
  expect_status 0
  [ -z "$output" ]
  [[ $stderr == *"template 'debian-13-template' already exists as VMID 9001 on this node; nothing to do"* ]]
  expect_lines "pveversion 
qm list
qm config 9001" "$(stub_calls)"
}

@test "a non-template VM with the template's name stops the script instead of adding a second one" {
  printf '      VMID NAME                 STATUS     MEM(MB)    BOOTDISK(GB) PID\n      9000 debian-13-template   stopped    2048               3.00 0\n' >"$STUB_STATE/qm-list"
  printf 'name: debian-13-template\n' >"$STUB_STATE/qm-config-9000"
  run --separate-stderr "$DEPLOY/vm-template-setup.sh" --dry-run --image-dir "$ISO"
  expect_status 1
  [[ $stderr == *"error: VM 9000 is named 'debian-13-template' but is not a template"*"qm destroy 9000 --purge"* ]]
}

@test "an image already present is verified and not downloaded again" {
  mkdir -p "$ISO" && printf 'image bytes from %s\n' "$URL" >"$IMG"
  run --separate-stderr "$DEPLOY/vm-template-setup.sh" --dry-run --image-dir "$ISO"
  expect_status 0
  expect_lines "$(qm_sequence 9000 local-lvm vmbr0 | sed 's/^/[dry-run] /')" "$output"
  [[ $stderr == *"image already present"* && $stderr == *"sha512 checksum of debian-13-genericcloud-amd64.qcow2 verified"* ]]
  # curl fetched only the checksum file.
  [ "$(grep '^curl' "$STUB_LOG")" = "curl -fsSL --retry 3 https://cloud.debian.org/images/cloud/trixie/latest/SHA512SUMS" ]
}

@test "a present image with the wrong checksum is refused" {
  mkdir -p "$ISO" && printf 'corrupted\n' >"$IMG"
  run --separate-stderr "$DEPLOY/vm-template-setup.sh" --dry-run --image-dir "$ISO"
  expect_status 1
  [[ $stderr == *"error: checksum mismatch for $IMG (sha512)"* ]]
  ! grep -q '^qm create' "$STUB_LOG"
}

@test "an explicit sha256 is checked; --image-hash none skips verification" {
  mkdir -p "$ISO" && printf 'image bytes from %s\n' "$URL" >"$IMG"
  good=$(sha256sum "$IMG" | cut -d' ' -f1)
  run --separate-stderr "$DEPLOY/vm-template-setup.sh" --dry-run --image-dir "$ISO" --image-hash "sha256:$good"
  expect_status 0
  [[ $stderr == *"sha256 checksum"*"verified"* ]]
  run --separate-stderr "$DEPLOY/vm-template-setup.sh" --dry-run --image-dir "$ISO" --image-hash "sha256:${good//?/0}"
  expect_status 1
  [[ $stderr == *"checksum mismatch"* ]]
  : >"$STUB_LOG"
  run --separate-stderr "$DEPLOY/vm-template-setup.sh" --dry-run --image-dir "$ISO" --image-hash none
  expect_status 0
  ! grep -q '^curl' "$STUB_LOG"
}

@test "the VMID is the first free one from --min-vmid, cluster-wide" {
  mkdir -p "$ISO" && printf 'image bytes from %s\n' "$URL" >"$IMG"
  echo '[{"id":"qemu/9000","vmid":9000,"node":"pve2","type":"qemu"},{"id":"lxc/9001","vmid":9001,"node":"pve3","type":"lxc"},{"id":"qemu/9100","vmid": 9100,"node":"pve1","type":"qemu"}]' >"$STUB_STATE/cluster-resources.json"
  run --separate-stderr "$DEPLOY/vm-template-setup.sh" --dry-run --image-dir "$ISO"
  expect_status 0
  [ "$(dry_run_lines | head -n 1)" = "[dry-run] qm create 9002 --name debian-13-template --memory 2048 --cores 2 --net0 virtio,bridge=vmbr0 --scsihw virtio-scsi-pci" ]
  run --separate-stderr "$DEPLOY/vm-template-setup.sh" --dry-run --image-dir "$ISO" --min-vmid 9100
  [ "$(dry_run_lines | head -n 1 | cut -d' ' -f2-4)" = "qm create 9101" ]
}

@test "custom storage and bridge, and empty --ci-user/--ip-config, change the sequence accordingly" {
  mkdir -p "$ISO" && printf 'image bytes from %s\n' "$URL" >"$IMG"
  run --separate-stderr "$DEPLOY/vm-template-setup.sh" --dry-run --image-dir="$ISO" --storage ceph-pool --bridge vmbr1 --ci-user "" --ip-config=""
  expect_status 0
  expect_lines "$(qm_sequence 9000 ceph-pool vmbr1 | grep -v -e ciuser -e ipconfig0 | sed 's/^/[dry-run] /')" "$output"
}

@test "a real run downloads through a temp file, verifies it, and runs the qm sequence" {
  run --separate-stderr "$DEPLOY/vm-template-setup.sh" --image-dir "$ISO"
  expect_status 0
  [ "$(cat "$IMG")" = "image bytes from $URL" ]
  [ "$(find "$ISO" -name '*.part*' | wc -l)" -eq 0 ]
  grep -q "^curl -fSL --retry 3 -o $IMG.part.[A-Za-z0-9]* $URL\$" "$STUB_LOG"
  expect_lines "$(qm_sequence 9000 local-lvm vmbr0)" "$(grep -E '^qm (create|set|template)' "$STUB_LOG")"
}

@test "a failing qm step destroys the half-built VM" {
  export STUB_FAIL="qm set 9000 --ide2"
  run --separate-stderr "$DEPLOY/vm-template-setup.sh" --image-dir "$ISO"
  [ "$status" -ne 0 ]
  [ "$(tail -n 1 "$STUB_LOG")" = "qm destroy 9000 --purge" ]
  ! grep -q '^qm template' "$STUB_LOG"
}

@test "a failed download leaves no partial file behind and creates no VM" {
  export STUB_FAIL="curl -fSL"
  run --separate-stderr "$DEPLOY/vm-template-setup.sh" --image-dir "$ISO"
  [ "$status" -ne 0 ]
  [ "$(find "$ISO" -type f | wc -l)" -eq 0 ]
  ! grep -q '^qm create' "$STUB_LOG"
}

@test "PVE older than 8.0 is refused" {
  export STUB_PVEVERSION="pve-manager/7.4-3/9002ab8a (running kernel: 5.15.102-1-pve)"
  run --separate-stderr "$DEPLOY/vm-template-setup.sh" --dry-run --image-dir "$ISO"
  expect_status 1
  [ "$stderr" = "error: Proxmox VE 8.0 or newer is needed (qm set import-from), this node runs 7.4" ]
}

@test "without root and without --dry-run it stops before any probe" {
  export STUB_UID=1000
  run --separate-stderr "$DEPLOY/vm-template-setup.sh"
  expect_status 1
  [ "$stderr" = "error: must run as root (use --dry-run to preview without root)" ]
  [ "$(stub_calls)" = "id -u" ]
}

@test "a missing PVE tool is named" {
  remove_stub qm
  run --separate-stderr "$DEPLOY/vm-template-setup.sh" --dry-run
  expect_status 1
  [ "$stderr" = "error: required command 'qm' not found on PATH" ]
}

@test "bad flags are usage errors (exit 2) naming the flag" {
  local -a cases=(
    "--min-vmid abc|--min-vmid must be a number from 100 to 999999999, got 'abc'"
    "--min-vmid 99|--min-vmid must be a number from 100 to 999999999, got '99'"
    "--storage bad!pool|--storage must be a PVE storage ID like local-lvm, got 'bad!pool'"
    "--template-name -bad-|--template-name must be a DNS-style name"
    "--image-url ftp://x/y.qcow2|--image-url must be an http(s) URL ending in a file name"
    "--image-hash md5:abc|--image-hash must be sha256:HEX"
    "--image-hash sha256:abc|--image-hash sha256: needs 64 hex digits"
    "--bridge averyveryverylongbridge|--bridge must be an interface name"
    "--image-dir relative/dir|--image-dir must be an absolute path"
    "--frobnicate|unknown option: --frobnicate"
    "--storage|--storage needs a value"
    "--storage --dry-run|--storage needs a value"
  )
  for c in "${cases[@]}"; do
    read -ra args <<<"${c%%|*}"
    run --separate-stderr "$DEPLOY/vm-template-setup.sh" "${args[@]}"
    [ "$status" -eq 2 ] || { echo "args: ${args[*]} -> status $status: $stderr"; return 1; }
    [[ $stderr == "error: ${c#*|}"* ]] || { echo "args: ${args[*]} -> $stderr"; return 1; }
    [[ $stderr == *"(run vm-template-setup.sh --help for usage)" ]]
  done
  [ ! -s "$STUB_LOG" ]
}

@test "a second run on the same node while one is in progress is refused" {
  [ -w /run/lock ] && command -v flock >/dev/null || skip "no writable /run/lock or no flock here"
  exec 8>>/run/lock/nstance-vm-template-setup.lock
  flock -n 8 || skip "another run holds the lock right now"
  run --separate-stderr "$DEPLOY/vm-template-setup.sh" --image-dir "$ISO"
  exec 8>&-
  expect_status 1
  [ "$stderr" = "error: another vm-template-setup.sh is running on this node" ]
  ! grep -q '^qm' "$STUB_LOG"
}
