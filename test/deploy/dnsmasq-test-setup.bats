#!/usr/bin/env bats
# dnsmasq-test-setup.sh against stub ip/systemctl/dnsmasq/apt-get: the config written for an
# interface, defaults derived from its address, package install ordering, and refusals.
bats_require_minimum_version 1.5.0
load helpers

setup() { setup_stubs; }

@test "dry-run for a VLAN interface writes its config, checks it and (re)starts dnsmasq" {
  run --separate-stderr "$DEPLOY/dnsmasq-test-setup.sh" --dry-run --interface vmbr0.100 --dns 10.0.0.1,10.0.0.2 --lease-time 12h
  expect_status 0
  expect_lines "[dry-run] mkdir -p /etc/dnsmasq.d
[dry-run] write /etc/dnsmasq.d/nstance-vmbr0.100.conf (mode 0644):
[dry-run]   | # Written by nstance's dnsmasq-test-setup.sh (dev/test only): DHCP for VMs on vmbr0.100.
[dry-run]   | # DHCP only: port=0 switches dnsmasq's DNS server off.
[dry-run]   | port=0
[dry-run]   | bind-interfaces
[dry-run]   | interface=vmbr0.100
[dry-run]   | dhcp-range=set:nst_vmbr0_100,10.0.0.100,10.0.0.250,255.255.255.0,12h
[dry-run]   | dhcp-option=tag:nst_vmbr0_100,option:router,10.0.0.5
[dry-run]   | dhcp-option=tag:nst_vmbr0_100,option:dns-server,10.0.0.1,10.0.0.2
[dry-run]   | dhcp-option=tag:nst_vmbr0_100,option:domain-search,nstance.local
[dry-run]   | log-dhcp
[dry-run] dnsmasq --test --conf-file=/etc/dnsmasq.d/nstance-vmbr0.100.conf
[dry-run] systemctl enable dnsmasq.service
[dry-run] systemctl restart dnsmasq.service" "$output"
  [ "$(stub_calls)" = "ip -o -4 addr show dev vmbr0.100" ]
}

@test "explicit range, netmask and gateway are used as given" {
  run --separate-stderr "$DEPLOY/dnsmasq-test-setup.sh" --dry-run --interface vmbr0 --range-start 192.168.1.50 --range-end 192.168.1.60 \
    --netmask 255.255.255.0 --gateway 192.168.1.1 --dns 1.1.1.1 --domain lab.example
  expect_status 0
  [[ $output == *"dhcp-range=set:nst_vmbr0,192.168.1.50,192.168.1.60,255.255.255.0,1h"* ]]
  [[ $output == *"option:router,192.168.1.1"* && $output == *"option:domain-search,lab.example"* ]]
}

@test "without dnsmasq the package is installed after the config is in place" {
  remove_stub dnsmasq
  run --separate-stderr "$DEPLOY/dnsmasq-test-setup.sh" --dry-run --interface vmbr0 --dns 1.1.1.1
  expect_status 0
  expect_lines "[dry-run] env DEBIAN_FRONTEND=noninteractive apt-get install -y dnsmasq
[dry-run] dnsmasq --test --conf-file=/etc/dnsmasq.d/nstance-vmbr0.conf
[dry-run] systemctl enable dnsmasq.service
[dry-run] systemctl restart dnsmasq.service" "$(dry_run_lines | tail -n 4)"
  [ "$(dry_run_lines | sed -n 2p)" = "[dry-run] write /etc/dnsmasq.d/nstance-vmbr0.conf (mode 0644):" ]
}

@test "addresses outside the interface's subnet, or covering its own address, are refused" {
  run --separate-stderr "$DEPLOY/dnsmasq-test-setup.sh" --dry-run --interface vmbr0.100 --range-start 10.0.1.3 --range-end 10.0.1.9
  expect_status 1
  [ "$stderr" = "error: --range-start 10.0.1.3 is not a host address of vmbr0.100's subnet 10.0.0.0/24" ]
  run --separate-stderr "$DEPLOY/dnsmasq-test-setup.sh" --dry-run --interface vmbr0 --range-start 192.168.1.2 --range-end 192.168.1.20
  expect_status 1
  [ "$stderr" = "error: the range 192.168.1.2-192.168.1.20 contains vmbr0's own address 192.168.1.10" ]
  run --separate-stderr "$DEPLOY/dnsmasq-test-setup.sh" --dry-run --interface vmbr0 --range-start 192.168.1.200 --range-end 192.168.1.100
  expect_status 2
  [[ $stderr == "error: --range-start 192.168.1.200 is after --range-end 192.168.1.100"* ]]
}

@test "an interface without IPv4, or a small subnet without a range, is refused" {
  run --separate-stderr "$DEPLOY/dnsmasq-test-setup.sh" --dry-run --interface vmbr7
  expect_status 1
  [ "$stderr" = "error: interface vmbr7 does not exist or has no IPv4 address; the DHCP server needs an address in the subnet it serves" ]
  printf '3: vmbr2    inet 10.9.9.1/28 brd 10.9.9.15 scope global vmbr2\n' >"$STUB_STATE/ip-addr"
  run --separate-stderr "$DEPLOY/dnsmasq-test-setup.sh" --dry-run --interface vmbr2
  expect_status 2
  [[ $stderr == "error: the vmbr2 subnet is smaller than /24: give --range-start and --range-end"* ]]
  run --separate-stderr "$DEPLOY/dnsmasq-test-setup.sh" --dry-run --interface vmbr2 --range-start 10.9.9.2 --range-end 10.9.9.14 --dns 10.9.9.1
  expect_status 0
  [[ $output == *"dhcp-range=set:nst_vmbr2,10.9.9.2,10.9.9.14,255.255.255.240,1h"* ]]
}

@test "uninstall removes the interface's file only when present" {
  run --separate-stderr "$DEPLOY/dnsmasq-test-setup.sh" --dry-run --interface vmbr1 --uninstall
  expect_status 0
  [ -z "$output" ]
  [[ $stderr == *"/etc/dnsmasq.d/nstance-vmbr1.conf does not exist; nothing to remove"* ]]
}

@test "bad flags are usage errors (exit 2)" {
  local -a cases=(
    "--interface bad/name|--interface must be an interface name like vmbr1, got 'bad/name'"
    "--range-start 10.0.0|--range-start must be an IPv4 address, got '10.0.0'"
    "--gateway 1.2.3.999|--gateway must be an IPv4 address, got '1.2.3.999'"
    "--dns 1.1.1.1,x|--dns must be IPv4 addresses separated by commas"
    "--lease-time 1y|--lease-time must look like 3600, 12h or infinite, got '1y'"
    "--domain -bad|--domain must be a domain name like nstance.local"
    "--netmask 255.0.255.0 --interface vmbr0|--netmask 255.0.255.0 is not a valid netmask"
    "--range-end|--range-end needs a value"
  )
  for c in "${cases[@]}"; do
    read -ra args <<<"${c%%|*}"
    run --separate-stderr "$DEPLOY/dnsmasq-test-setup.sh" --dry-run "${args[@]}"
    [ "$status" -eq 2 ] || { echo "args: ${args[*]} -> status $status: $stderr"; return 1; }
    [[ $stderr == "error: ${c#*|}"* ]] || { echo "args: ${args[*]} -> $stderr"; return 1; }
  done
}
