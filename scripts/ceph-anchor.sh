#!/usr/bin/env bash
# ceph-anchor.sh [DIR] [SECONDS]
#
# Anchor measurement of real Ceph (Debian bookworm packages, 16.2.x Pacific)
# on this machine, so Sepia's figures can be put next to Ceph's.
#
# Builds a throwaway cluster under DIR (default: new mktemp dir) on 127.0.0.1:
# 1 mon, 3 BlueStore OSDs on plain 1 GiB files, cephx on, then runs
# `rados bench` with 4 KiB objects (write qd1/qd32, rand read qd1/qd32) on a
# size-3 pool `anchor3` and a size-1 pool `anchor1`, and prints one table.
#
# Needs root and: apt-get install -y --no-install-recommends \
#     ceph-mon ceph-osd ceph-common
# No ceph-mgr: pool creation, PG creation/peering and rados bench are all
# handled by mon + OSDs. The mgr only aggregates PG stats (`ceph pg stat`,
# `ceph -s`), so the wait for active+clean asks each OSD's admin socket
# instead. Expect HEALTH_WARN "no active mgr"; it does not affect I/O.
#
# Environment:
#   KEEP=1          keep DIR (and its logs) on exit; daemons are still stopped
#   POOLS="3 1"     pool sizes to measure (anchor3, anchor1)
#   OSD_SIZE=bytes  BlueStore file size per OSD (default 1 GiB)
#   MEDIA=auto|hdd|ssd  auto = what Ceph detects (the OSD files inherit the
#                   backing disk's sysfs "rotational" flag); ssd/hdd force
#                   BlueStore's and the OSD op queue's tunables.
#   CLEAN_TIMEOUT=s wait for active+clean at most this long (default 180)
#
# Notes on what is measured:
#   * rados bench write creates a NEW object per op (4 KiB write_full to a
#     fresh object name), i.e. create+write, not overwrite.
#   * rand reads read back objects from the preceding qd32 write run
#     (--no-cleanup); they mostly hit the BlueStore cache.
#   * OSD CPU us/IO = (utime+stime of all 3 ceph-osd processes over the case)
#     / (ops rados bench completed). Replication work is included.
set -euo pipefail

[ "$(id -u)" -eq 0 ] || { echo "ceph-anchor: must run as root" >&2; exit 1; }
for b in ceph ceph-mon ceph-osd ceph-authtool monmaptool rados; do
    command -v "$b" >/dev/null || { echo "ceph-anchor: $b not found (apt-get install ceph-mon ceph-osd ceph-common)" >&2; exit 1; }
done

DIR=${1:-}
DUR=${2:-10}
KEEP=${KEEP:-0}
POOLS=${POOLS:-"3 1"}
OSD_SIZE=${OSD_SIZE:-1073741824}
MEDIA=${MEDIA:-auto}
CLEAN_TIMEOUT=${CLEAN_TIMEOUT:-180}
NOSD=3
PGS=32

if [ -z "$DIR" ]; then
    DIR=$(mktemp -d /tmp/ceph-anchor.XXXXXX)
else
    # Refuse to use (and later delete) a directory that holds anything.
    if [ -e "$DIR" ] && [ -n "$(ls -A "$DIR")" ]; then
        echo "ceph-anchor: $DIR exists and is not empty" >&2; exit 1
    fi
    mkdir -p "$DIR"
fi
DIR=$(cd "$DIR" && pwd)
CONF=$DIR/ceph.conf
ADMIN_KEYRING=$DIR/ceph.client.admin.keyring
mkdir -p "$DIR/log" "$DIR/run" "$DIR/crash"

declare -a PIDS=()
RADOS_PID=""
cleanup() {
    local rc=$? pid i
    trap - EXIT INT TERM
    [ -n "$RADOS_PID" ] && kill -TERM "$RADOS_PID" 2>/dev/null || true
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "$KEEP" = 1 ] || [ "$DIR" = / ]; then
        echo "ceph-anchor: kept $DIR" >&2
    else
        rm -rf -- "$DIR"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "ceph-anchor: $*" >&2; exit 1; }
log() { echo "[$(date +%T)] $*" >&2; }
c() { timeout 120 ceph -c "$CONF" --connect-timeout 60 "$@"; }

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
MON_PORT=$(free_port)
# Keep OSD ports off the default 6800-7300 range other daemons may use;
# OSDs skip ports that are taken within the range.
PORT_MIN=$(( 40000 + RANDOM % 20000 ))
PORT_MAX=$(( PORT_MIN + 199 ))
FSID=$(cat /proc/sys/kernel/random/uuid)

media_conf=""
case "$MEDIA" in
    auto) ;;
    ssd) media_conf="bluestore_debug_enforce_settings = ssd
osd_op_num_shards = 8
osd_op_num_threads_per_shard = 2" ;;
    hdd) media_conf="bluestore_debug_enforce_settings = hdd
osd_op_num_shards = 5
osd_op_num_threads_per_shard = 1" ;;
    *) die "MEDIA must be auto, ssd or hdd" ;;
esac

cat >"$CONF" <<EOF
[global]
fsid = $FSID
mon_host = [v2:127.0.0.1:$MON_PORT]
public_addr = 127.0.0.1
ms_bind_msgr1 = false
ms_bind_port_min = $PORT_MIN
ms_bind_port_max = $PORT_MAX
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
auth_allow_insecure_global_id_reclaim = false

# everything stays inside DIR, nothing to syslog (16.2 has no journald log options)
log_file = $DIR/log/\$name.log
log_to_stderr = false
err_to_stderr = true
log_to_syslog = false
err_to_syslog = false
clog_to_syslog = false
mon_cluster_log_to_syslog = false
mon_cluster_log_file = $DIR/log/cluster.log
run_dir = $DIR/run
admin_socket = $DIR/run/\$name.asok
pid_file = $DIR/run/\$name.pid
crash_dir = $DIR/crash

# single host, dev cluster
osd_crush_chooseleaf_type = 0
osd_pool_default_size = 3
osd_pool_default_min_size = 2
osd_pool_default_pg_autoscale_mode = off
mon_allow_pool_delete = true
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
mon_osd_reporter_subtree_level = osd
mon_data_avail_warn = 2
mon_data_avail_crit = 1

[client]
keyring = $ADMIN_KEYRING
log_file = $DIR/log/\$name.\$pid.log
admin_socket = $DIR/run/\$name.\$pid.asok

[mon]
mon_data = $DIR/mon.\$id
keyring = $DIR/mon.\$id/keyring

[osd]
osd_data = $DIR/osd.\$id
keyring = $DIR/osd.\$id/keyring
osd_objectstore = bluestore
bluestore_block_path = $DIR/osd.\$id.block
bluestore_block_size = $OSD_SIZE
bluestore_block_create = true
$media_conf
EOF

start_daemon() { # name, cmd...
    local name=$1; shift
    "$@" -f -c "$CONF" --setuser root --setgroup root \
        >"$DIR/log/$name.out" 2>&1 &
    PIDS+=($!)
}

# ---- monitor -------------------------------------------------------------
log "DIR=$DIR mon=127.0.0.1:$MON_PORT osd ports $PORT_MIN-$PORT_MAX media=$MEDIA"
ceph-authtool --create-keyring "$DIR/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool --create-keyring "$ADMIN_KEYRING" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *' >/dev/null
ceph-authtool "$DIR/mon.keyring" --import-keyring "$ADMIN_KEYRING" >/dev/null
monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" "$DIR/monmap" >/dev/null
mkdir -p "$DIR/mon.a"
ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/mon.keyring" \
    >"$DIR/log/mon.a.mkfs.out" 2>&1 || { cat "$DIR/log/mon.a.mkfs.out" >&2; die "ceph-mon --mkfs failed"; }
start_daemon mon.a ceph-mon -i a
c -s >/dev/null || die "monitor did not come up (see $DIR/log/mon.a.*)"

# ---- OSDs ----------------------------------------------------------------
for id in $(seq 0 $((NOSD - 1))); do
    uuid=$(cat /proc/sys/kernel/random/uuid)
    key=$(ceph-authtool --gen-print-key)
    got=$(echo "{\"cephx_secret\": \"$key\"}" | c osd new "$uuid" "$id" -i -)
    [ "$got" = "$id" ] || die "ceph osd new returned '$got', wanted $id"
    mkdir -p "$DIR/osd.$id"
    ceph-authtool --create-keyring "$DIR/osd.$id/keyring" -n "osd.$id" --add-key "$key" >/dev/null
    ceph-osd -c "$CONF" -i "$id" --mkfs --osd-uuid "$uuid" --osd-objectstore bluestore \
        --setuser root --setgroup root >"$DIR/log/osd.$id.mkfs.out" 2>&1 \
        || { tail -20 "$DIR/log/osd.$id.mkfs.out" >&2; die "ceph-osd --mkfs $id failed"; }
    start_daemon "osd.$id" ceph-osd -i "$id"
done
OSD_PIDS=("${PIDS[@]:1}")

deadline=$(( $(date +%s) + 120 ))
until [ "$(c osd stat -f json | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["num_up_osds"])')" = "$NOSD" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || die "OSDs not up after 120s (see $DIR/log/osd.*)"
    sleep 1
done
log "$NOSD OSDs up"
for pid in "${OSD_PIDS[@]}"; do
    [ "$(cat "/proc/$pid/comm")" = ceph-osd ] || die "pid $pid is not a ceph-osd"
done
ROT=$(c osd metadata 0 -f json | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("bluestore_bdev_type","?"), "rotational="+d.get("rotational","?"))')

# ---- pools -----------------------------------------------------------------
pool_id() {
    c osd dump -f json | /usr/bin/python3 -c '
import json,sys
for p in json.load(sys.stdin)["pools"]:
    if p["pool_name"] == sys.argv[1]: print(p["pool"])' "$1"
}

# Without a mgr nothing aggregates PG states (`ceph pg stat` hangs), so ask
# the OSDs' admin sockets directly: for every PG of the pool, "query" it at
# whichever OSD is primary and require state "active+clean" at an osdmap
# epoch >= the one after the last pool change (size 3 -> 1 re-peers).
# One python process speaks the admin socket protocol (JSON + NUL out,
# 4-byte big-endian length + payload back) to keep each poll cheap.
cat >"$DIR/pgstate.py" <<'PY'
import json, socket, struct, sys, collections
rundir, nosd, pool, pgnum, epoch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def recvn(s, n):
    b = b""
    while len(b) < n:
        x = s.recv(n - len(b))
        if not x: raise EOFError
        b += x
    return b
def asok(osd, cmd):
    s = socket.socket(socket.AF_UNIX); s.settimeout(30)
    s.connect("%s/osd.%d.asok" % (rundir, osd))
    s.sendall(json.dumps(cmd).encode() + b"\0")
    n = struct.unpack(">I", recvn(s, 4))[0]
    d = recvn(s, n); s.close(); return d
states = collections.Counter()
for i in range(pgnum):
    pgid = "%d.%x" % (pool, i)
    st = "no-primary"
    for osd in range(nosd):
        try:
            d = json.loads(asok(osd, {"prefix": "query", "pgid": pgid}))
        except Exception:
            continue
        st = d["state"] if int(d["epoch"]) >= epoch else "stale-epoch"
        break
    states[st] += 1
print(states["active+clean"], " ".join("%s=%d" % kv for kv in sorted(states.items())))
PY

wait_clean() { # pool_name
    local id n deadline epoch ok
    id=$(pool_id "$1")
    [ -n "$id" ] || die "pool $1 not found"
    epoch=$(c osd dump -f json | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["epoch"])')
    deadline=$(( $(date +%s) + CLEAN_TIMEOUT ))
    while :; do
        n=$(/usr/bin/python3 "$DIR/pgstate.py" "$DIR/run" "$NOSD" "$id" "$PGS" "$epoch")
        [ "${n%% *}" = "$PGS" ] && break
        if [ "$(date +%s)" -ge "$deadline" ]; then
            die "pool $1: PGs not all active+clean after ${CLEAN_TIMEOUT}s: ${n#* } (see $DIR/log; KEEP=1 keeps it)"
        fi
        sleep 0.5
    done
    log "pool $1 (id $id): $PGS/$PGS PGs active+clean at osdmap epoch >= $epoch"
}

create_pool() { # size
    local size=$1 name=anchor$1
    c osd pool create "$name" "$PGS" "$PGS" replicated >/dev/null
    if [ "$size" -eq 1 ]; then
        # Pacific refuses size 1 unless mon_allow_pool_size_one and the flag.
        c osd pool set "$name" min_size 1 >/dev/null
        c osd pool set "$name" size 1 --yes-i-really-mean-it >/dev/null
    else
        c osd pool set "$name" size "$size" >/dev/null
    fi
    c osd pool application enable "$name" rados >/dev/null
    wait_clean "$name"
}

# ---- benchmark -------------------------------------------------------------
TCK=$(getconf CLK_TCK)
osd_ticks() {
    local pid sum=0 f
    for pid in "${OSD_PIDS[@]}"; do
        [ -r "/proc/$pid/stat" ] || die "ceph-osd pid $pid has exited (see $DIR/log)"
        # fields after "(comm)": state is $1, utime $12, stime $13
        f=$(sed 's/^.*) //' "/proc/$pid/stat")
        sum=$(( sum + $(echo "$f" | awk '{print $12 + $13}') ))
    done
    echo "$sum"
}

mkdir -p "$DIR/bench"
ROWS=()
run_case() { # size mode qd
    local size=$1 mode=$2 qd=$3 name out t0 t1 rc=0
    name=ceph.size$size.$([ "$mode" = write ] && echo write || echo read).qd$qd
    out=$DIR/bench/$name.txt
    local args=(-c "$CONF" -p "anchor$size" bench "$DUR" "$mode" -t "$qd")
    [ "$mode" = write ] && args+=(-b 4096 --no-cleanup)
    log "$name: rados ${args[*]}"
    t0=$(osd_ticks)
    rados "${args[@]}" >"$out" 2>&1 &
    RADOS_PID=$!
    wait "$RADOS_PID" || rc=$?
    RADOS_PID=""
    t1=$(osd_ticks)
    [ "$rc" -eq 0 ] || { tail -20 "$out" >&2; die "$name: rados bench failed ($rc)"; }
    ROWS+=("$(/usr/bin/python3 - "$name" "$out" "$((t1 - t0))" "$TCK" <<'PY'
import re,sys
name, path, ticks, tck = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
txt = open(path).read()
def get(label):
    m = re.search(r"^" + re.escape(label) + r":\s*([0-9.eE+-]+)", txt, re.M)
    if not m: sys.exit("%s: no '%s' in rados bench output" % (name, label))
    return float(m.group(1))
ops = get("Total writes made") if ".write." in name else get("Total reads made")
iops = get("Average IOPS")
lat = get("Average Latency(s)") * 1e6
cpu = ticks / tck * 1e6 / ops if ops else float("nan")
print("%-22s %9.0f %12.0f %17.0f %9d" % (name, iops, lat, cpu, ops))
PY
)")
}

for size in $POOLS; do create_pool "$size"; done
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
for size in $POOLS; do
    run_case "$size" write 1
    run_case "$size" write 32
    run_case "$size" rand 1
    run_case "$size" rand 32
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

echo "# $(ceph-osd --version | cut -d' ' -f1-3); ${DUR}s per case; 4 KiB objects; $NOSD OSDs BlueStore on ${OSD_SIZE}-byte files; tunables $MEDIA, device reports $ROT; $(nproc) CPUs; loadavg before $LOAD0, after $LOAD1"
printf '%-22s %9s %12s %17s %9s\n' case IOPS avg_lat_us osd_cpu_us_per_io ops
printf '%s\n' "${ROWS[@]}"
