#!/usr/bin/env bash
# A real S3 server on loopback for the tests: Ceph's RADOS Gateway over a throwaway one-node Ceph cluster
# (one monitor, one OSD keeping its objects in memory), all from Debian packages, every socket on 127.0.0.1.
#
#   bash scripts/s3-server.sh install   installs the Debian packages (ceph-mon ceph-osd radosgw ceph-common)
#   bash scripts/s3-server.sh start     starts it unless it runs (creating the user and the bucket) and prints
#                                       `export AWS_…=…` lines and S3_TEST_BUCKET: eval "$(bash … start)"
#   bash scripts/s3-server.sh env       prints those lines for a running server
#   bash scripts/s3-server.sh stop      stops it and removes its directory
#
# Settings: S3_DIR (default /tmp/nstance-s3), S3_PORT (7480), S3_MON_PORT (16789), S3_BUCKET (nstance-test).
# `start` never installs anything: without the packages it says which are missing and exits 3.
#
# What RGW does that the S3 layer copes with (checked by test/store/s3.test.ts): If-None-Match: * and
# If-Match conditional PUTs have exactly one winner, but a loser may get 500 or 409 instead of 412; If-Match
# wants the ETag without quotes; If-Match on a missing key gives 412 where AWS gives 404; streamed uploads
# need the SDK's requestChecksumCalculation "WHEN_REQUIRED".
set -euo pipefail

DIR=${S3_DIR:-/tmp/nstance-s3}
PORT=${S3_PORT:-7480}
MON_PORT=${S3_MON_PORT:-16789}
BUCKET=${S3_BUCKET:-nstance-test}
ACCESS_KEY=nstance-test-access
SECRET_KEY=nstance-test-secret-key-0123456789
CONF=$DIR/ceph.conf
PACKAGES=(ceph-mon ceph-osd radosgw ceph-common)
PROGRAMS=(ceph-mon ceph-osd radosgw radosgw-admin ceph ceph-authtool monmaptool)
# The monitor sometimes refuses a freshly made OSD right after an earlier cluster on the same ports went
# away; a clean second bring-up has always worked. Bounded, and each failure is reported.
ATTEMPTS=3

say() { echo "s3-server: $*" >&2; }

print_exports() {
  cat <<EOT
export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT
export AWS_S3_USE_PATH_STYLE=true
export AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export S3_TEST_BUCKET=$BUCKET
EOT
}

missing_programs() {
  local program missing=()
  for program in "${PROGRAMS[@]}"; do
    command -v "$program" >/dev/null 2>&1 || [ -x "/usr/sbin/$program" ] || [ -x "/usr/bin/$program" ] || missing+=("$program")
  done
  echo "${missing[*]}"
}

install_packages() {
  [ -z "$(missing_programs)" ] && return 0
  say "installing ${PACKAGES[*]} (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${PACKAGES[@]}" >/dev/null
  local still; still=$(missing_programs)
  [ -z "$still" ] || { say "still missing after the install: $still"; exit 1; }
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

serving() {
  [ -f "$DIR/rgw.pid" ] && kill -0 "$(cat "$DIR/rgw.pid")" 2>/dev/null && curl -fs -o /dev/null "http://127.0.0.1:$PORT"
}

stop_server() {
  local pidfile pid
  for pidfile in "$DIR"/rgw.pid "$DIR"/osd.pid "$DIR"/mon.pid "$DIR"/run/*.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$DIR"
  for _ in $(seq 1 100); do port_open "$MON_PORT" || port_open "$PORT" || return 0; sleep 0.1; done
}

# wait_until SECONDS WHAT COMMAND...: polls once a second; on time-out says what it waited for and fails.
wait_until() {
  local seconds=$1 what=$2; shift 2
  for _ in $(seq 1 "$seconds"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  say "gave up waiting for $what after ${seconds} s (logs: $DIR/log)"
  return 1
}

write_conf() {
  local fsid=$1
  cat >"$CONF" <<EOT
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$MON_PORT
public addr = 127.0.0.1
cluster addr = 127.0.0.1
public network = 127.0.0.0/8
cluster network = 127.0.0.0/8
ms bind msgr2 = false
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = false
osd objectstore = memstore
memstore device bytes = 4294967296
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon max pg per osd = 1000
osd crush chooseleaf type = 0
mon warn on pool no redundancy = false
mon data avail crit = 1
mon data avail warn = 2
osd max object name len = 460
osd max object namespace len = 64
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
pid file = $DIR/run/\$name.pid
keyring = $DIR/keyring
mon data = $DIR/mon/\$id
osd data = $DIR/osd/\$id
[client.rgw.local]
rgw frontends = beast endpoint=127.0.0.1:$PORT tcp_nodelay=1
rgw dns name = 127.0.0.1
rgw enable usage log = false
rgw thread pool size = 64
EOT
}

# One bring-up from nothing; returns non-zero (having said why) when any stage fails.
bring_up() {
  mkdir -p "$DIR"/{mon,osd,run,log}
  local fsid osd_uuid
  fsid=$(cat /proc/sys/kernel/random/uuid)
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)
  write_conf "$fsid"
  ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool "$DIR/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
  monmaptool --create --addv a "[v1:127.0.0.1:$MON_PORT]" --fsid "$fsid" "$DIR/monmap" >/dev/null
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring" || { say "ceph-mon --mkfs failed"; return 1; }
  ceph-mon -c "$CONF" -i a || { say "ceph-mon did not start"; return 1; }
  wait_until 20 "the monitor's pid file" test -f "$DIR/run/mon.a.pid" || return 1
  cp "$DIR/run/mon.a.pid" "$DIR/mon.pid"
  timeout 60 ceph -c "$CONF" osd new "$osd_uuid" 0 >/dev/null || { say "the monitor did not register the OSD"; return 1; }
  mkdir -p "$DIR/osd/0"
  ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" >>"$DIR/log/osd-mkfs.out" 2>&1 || { say "ceph-osd --mkfs failed: $(tail -n 1 "$DIR/log/osd-mkfs.out")"; return 1; }
  ceph-osd -c "$CONF" -i 0 2>>"$DIR/log/osd-start.err" || { say "ceph-osd did not start: $(tail -n 1 "$DIR/log/osd-start.err")"; return 1; }
  wait_until 20 "the OSD's pid file" test -f "$DIR/run/osd.0.pid" || return 1
  cp "$DIR/run/osd.0.pid" "$DIR/osd.pid"
  wait_until 60 "the OSD to be up" sh -c "timeout 10 ceph -c '$CONF' osd stat | grep -q '1 up'" || return 1
  radosgw -c "$CONF" -n client.rgw.local || { say "radosgw did not start"; return 1; }
  wait_until 120 "radosgw to answer on port $PORT" curl -fs -o /dev/null "http://127.0.0.1:$PORT" || return 1
  cp "$DIR/run/client.rgw.local.pid" "$DIR/rgw.pid"
  timeout 60 radosgw-admin -c "$CONF" user create --uid=nstance --display-name=nstance \
    --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >/dev/null || { say "radosgw-admin could not create the user"; return 1; }
  # An empty body's SHA-256, which SigV4 wants in this header.
  curl -fsS --aws-sigv4 "aws:amz:us-east-1:s3" --user "$ACCESS_KEY:$SECRET_KEY" -X PUT \
    -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
    "http://127.0.0.1:$PORT/$BUCKET" >/dev/null || { say "could not create the bucket $BUCKET"; return 1; }
}

start_server() {
  if serving; then print_exports; return 0; fi
  local missing; missing=$(missing_programs)
  if [ -n "$missing" ]; then
    say "not installed: $missing; install with: sudo apt-get install ${PACKAGES[*]} (or: bash scripts/s3-server.sh install)"
    exit 3
  fi
  local attempt
  for attempt in $(seq 1 "$ATTEMPTS"); do
    stop_server
    if port_open "$MON_PORT" || port_open "$PORT"; then say "port $MON_PORT or $PORT is in use by another program"; exit 1; fi
    if bring_up; then print_exports; return 0; fi
    say "attempt $attempt of $ATTEMPTS failed; the last lines of its logs:"
    tail -n 3 "$DIR"/log/* >&2 2>/dev/null || true
    sleep 1
  done
  say "no S3 server after $ATTEMPTS attempts"
  stop_server
  exit 1
}

case "${1:-start}" in
  install) install_packages ;;
  start) start_server ;;
  stop) stop_server ;;
  env) if serving; then print_exports; else say "not running"; exit 1; fi ;;
  *) echo "usage: $0 install|start|stop|env" >&2; exit 2 ;;
esac
