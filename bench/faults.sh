#!/usr/bin/env bash
# Fault trials (issue 12), the rows built so far:
# 1. `kill -9` of `clusto apply` of an N-server manifest at a random moment,
#    on SQLite and PostgreSQL. After each kill the store must be either as
#    before (no revision, no server) or fully applied (one revision, every
#    server), and `clusto fsck` clean.
# 2. 8 concurrent `clusto apply` of overlapping manifests (the same 200
#    servers, each applier its own owner) on PostgreSQL: each apply all or
#    nothing (one revision or a one-line error), no lost update (the servers
#    all carry the owner of the last revision), `clusto fsck` clean.
# 3. `kill -9` of `clusto snmptrapd` while it creates servers from a stream
#    of INFORMs (40 new servers at 400/s, one empty rack per trial), on
#    SQLite and PostgreSQL: every discovered server is whole (placed,
#    cabled with its MAC, addressed) and `clusto fsck` is clean.
# 4. A full disk: SQLite on a small tmpfs filling up during an apply
#    (row fulldisk; needs root to mount).
# 5. PostgreSQL restarted while dhcpd serves and an apply runs (row
#    pgrestart; a private PostgreSQL cluster).
# 6. kill -9 of the controller converging and deleting 200 EC2 VMs on moto
#    (row controller).
# 7. kill -9 of dhcpd while it records learnt MACs (row dhcpd).
# Each apply trial starts from an empty store; the kill moment is uniform
# over 1.2 × the time one full apply takes (so some trials let it finish).
# 8. PostgreSQL restarted under the controller (row pgcontroller).
# 9. kill -9 of the controller converging and deleting VMs on a real
#    libvirtd with QEMU (row libvirt; --vms guests per trial, default 20).
# --backends limits the rows that run on both stores to some of them.
# --debug uses debug builds (CI runs a short pass: few trials, small N);
# the exit status is 1 when any trial found a violation.
# Usage: bench/faults.sh [--trials 100] [--debug] [--backends "sqlite postgres"] [--servers 10000] [--vms 20] [--rows "apply concurrent snmptrapd fulldisk pgrestart controller dhcpd pgcontroller libvirt"]
set -euo pipefail
cd "$(dirname "$0")/.."
BACKENDS="sqlite postgres"; PROFILE=release; TRIALS=100; N=10000; ROWS="apply concurrent snmptrapd fulldisk pgrestart controller dhcpd pgcontroller libvirt"; VMS=20
while [ $# -gt 0 ]; do
  case "$1" in
    --trials) TRIALS=$2; shift 2;;
    --servers) N=$2; shift 2;;
    --rows) ROWS=$2; shift 2;;
    --vms) VMS=$2; shift 2;;
    --debug) PROFILE=debug; shift;;
    --backends) BACKENDS=$2; shift 2;;
    *) echo "usage: $0 [--trials N] [--servers N] [--vms N] [--debug] [--backends 'sqlite postgres'] [--rows 'apply concurrent snmptrapd fulldisk pgrestart controller dhcpd pgcontroller libvirt']"; exit 2;;
  esac
done
row() { [[ " $ROWS " == *" $1 "* ]]; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/clusto-target}
if [ "$PROFILE" = release ]; then
  cargo build --release --locked -q -p clusto-cli --bin clusto -p clusto-bench --bin snmp-load
else
  cargo build --locked -q -p clusto-cli --bin clusto -p clusto-bench --bin snmp-load
fi
C="$CARGO_TARGET_DIR/$PROFILE/clusto"; L="$CARGO_TARGET_DIR/$PROFILE/snmp-load"
# Every row adds what it found wrong here; exit 1 if anything was.
violations=0
found() { for n in "$@"; do violations=$((violations + n)); done; }
PG=${CLUSTO_BENCH_PG:-postgres://postgres@127.0.0.1:5432/postgres}
DB=clusto_bench_faults_$$   # per run: two runs never drop each other's database
work=$(mktemp -d)
trap 'umount "$work/disk" 2>/dev/null || true; rm -rf "$work"; psql "$PG" -qAt -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
"$C" generate --racks $((N / 40)) --servers-per-rack 40 > "$work/gen.yaml"

fresh() {
  case "$1" in
    sqlite) rm -f "$work"/s.db*; echo "sqlite://$work/s.db";;
    postgres)
      psql "$PG" -qAt -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
      psql "$PG" -qAt -c "CREATE DATABASE $DB" >/dev/null
      echo "${PG%/*}/$DB";;
  esac
}

# A private PostgreSQL cluster to restart (initdb in a temporary directory,
# port 5499; the machine's cluster is never touched). Started once.
PRIVATE_PG=postgres://postgres@127.0.0.1:5499
private_pg() {
  [ -z "${pgdir:-}" ] || return 0
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  pgdir=$(mktemp -d /tmp/clusto-pg.XXXXXX); chown postgres "$pgdir"
  runuser -u postgres -- "$PGBIN/initdb" -D "$pgdir/data" -U postgres --auth=trust >/dev/null
  pgctl -o "-p 5499 -k $pgdir -c listen_addresses=127.0.0.1" start
  trap 'pgctl stop -m immediate 2>/dev/null || true; rm -rf "$pgdir" "$work"' EXIT
}
pgctl() { runuser -u postgres -- "$PGBIN/pg_ctl" -D "$pgdir/data" -w -l "$pgdir/log" "$@" >/dev/null; }

for backend in $BACKENDS; do
  row apply || break
  export CLUSTO_STORE; CLUSTO_STORE=$(fresh "$backend")
  "$C" get datacenter -o name >/dev/null   # migrations, so the trials time the apply alone
  t0=$(date +%s%N); "$C" apply -f "$work/gen.yaml" >/dev/null; t1=$(date +%s%N)
  full_ms=$(( (t1 - t0) / 1000000 ))
  before=0; applied=0; broken=0; dirty=0
  for _ in $(seq "$TRIALS"); do
    CLUSTO_STORE=$(fresh "$backend")
    "$C" get datacenter -o name >/dev/null
    delay_ms=$(( RANDOM * RANDOM % (full_ms * 12 / 10 + 1) ))
    "$C" apply -f "$work/gen.yaml" >/dev/null 2>&1 &
    pid=$!
    sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    revs=$("$C" history --limit 0 -o json 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')
    servers=$("$C" query 'kind:server' -o name | grep -c . || true)
    if [ "$revs" = 0 ] && [ "$servers" = 0 ]; then before=$((before + 1))
    elif [ "$revs" = 1 ] && [ "$servers" -ge "$N" ]; then applied=$((applied + 1))
    else broken=$((broken + 1)); echo "   broken: $revs revision(s), $servers servers (kill at $delay_ms ms)"
    fi
    "$C" fsck >/dev/null 2>&1 || { dirty=$((dirty + 1)); "$C" fsck 2>&1 | head -3 | sed 's/^/   fsck: /'; }
  done
  echo "== $backend: kill -9 of apply ($N servers, one full apply $full_ms ms) × $TRIALS: as before $before, fully applied $applied, anything else $broken; fsck not clean $dirty"
  found "$broken" "$dirty"
done

# --- 8 concurrent appliers on PostgreSQL -----------------------------------
write_manifest() {  # OWNER FILE
  python3 - "$1" "$2" <<'PY'
import sys
owner, path = sys.argv[1], sys.argv[2]
with open(path, "w") as f:
    f.write("apiVersion: clusto.dev/v1alpha1\nkind: Datacenter\nmetadata: {name: dc}\n")
    for i in range(200):
        f.write(f"---\napiVersion: clusto.dev/v1alpha1\nkind: Server\nmetadata: {{name: c{i:03d}}}\n"
                f"spec:\n  datacenter: dc\n  attrs: {{owner: {owner}}}\n")
PY
}
write_manifest base "$work/base.yaml"
for k in 1 2 3 4 5 6 7 8; do write_manifest "a$k" "$work/a$k.yaml"; done
ROUNDS=$(( TRIALS / 10 > 0 ? TRIALS / 10 : 1 ))
row concurrent || ROUNDS=0
ok=0; refused=0; lost=0; bad_err=0; dirty=0
for _ in $(seq "$ROUNDS"); do
  export CLUSTO_STORE; CLUSTO_STORE=$(fresh postgres)
  "$C" apply -f "$work/base.yaml" --apply-set shared >/dev/null
  pids=()
  for k in 1 2 3 4 5 6 7 8; do
    "$C" -m "applier a$k" apply -f "$work/a$k.yaml" --apply-set shared >"$work/out$k" 2>"$work/err$k" &
    pids+=($!)
  done
  for k in 1 2 3 4 5 6 7 8; do
    if wait "${pids[$((k - 1))]}"; then ok=$((ok + 1))
    else
      refused=$((refused + 1))
      [ "$(wc -l < "$work/err$k")" = 1 ] && grep -q '^error: ' "$work/err$k" || bad_err=$((bad_err + 1))
    fi
  done
  last=$("$C" history --limit 1 -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["message"].split()[-1])')
  have=$("$C" query "attr:owner=$last" -o name | grep -c . || true)
  [ "$have" = 200 ] || { lost=$((lost + 1)); echo "   lost update: the last revision is $last's, $have servers carry it"; }
  "$C" fsck >/dev/null 2>&1 || dirty=$((dirty + 1))
done
[ "$ROUNDS" = 0 ] || echo "== postgres: 8 concurrent appliers of the same 200 servers × $ROUNDS rounds: applied $ok, refused $refused (not one clear line: $bad_err), lost updates $lost; fsck not clean $dirty"
found "$bad_err" "$lost" "$dirty"

# --- kill -9 of snmptrapd mid-discovery ------------------------------------
python3 bench/snmp_inventory.py 0 "$TRIALS" > "$work/racks.yaml"
for backend in $BACKENDS; do
  row snmptrapd || break
  export CLUSTO_STORE; CLUSTO_STORE=$(fresh "$backend")
  "$C" apply -f "$work/racks.yaml" >/dev/null
  dirty=0; partial=0; made=0
  for t in $(seq 0 $((TRIALS - 1))); do
    "$C" snmptrapd --listen 127.0.0.1:11162 2>/dev/null &
    dp=$!
    for _ in $(seq 100); do grep -q ':2B9A ' /proc/net/udp && break; sleep 0.02; done
    "$L" new 127.0.0.1:11162 "$t" 40 400 100 >/dev/null 2>&1 &
    lp=$!
    delay_ms=$(( 100 + RANDOM % 120 ))
    sleep "$(printf '0.%03d' "$delay_ms")"
    kill -9 "$dp" 2>/dev/null || true; wait "$dp" 2>/dev/null || true
    kill "$lp" 2>/dev/null || true; wait "$lp" 2>/dev/null || true
    # Whole = in a rack, NIC cabled with its MAC, an address: as many of
    # each as there are discovered servers.
    read -r n racked macs addrs < <("$C" export 'name:disc-*' | awk '
      /^kind: Server/ {n++} /^  rack:/ {r++} /^    mac: 02:cc/ {m++} /^  - address:/ {a++}
      END {print n+0, r+0, m+0, a+0}')
    made=$n
    if [ "$racked" != "$n" ] || [ "$macs" != "$n" ] || [ "$addrs" != "$n" ]; then
      partial=$((partial + 1)); echo "   partial: $n servers, $racked racked, $macs with MAC, $addrs addressed (kill at $delay_ms ms)"
    fi
    "$C" fsck >/dev/null 2>&1 || { dirty=$((dirty + 1)); "$C" fsck 2>&1 | head -3 | sed 's/^/   fsck: /'; }
  done
  echo "== $backend: kill -9 of snmptrapd mid-discovery × $TRIALS: $made servers discovered in all, half-made $partial; fsck not clean $dirty"
  found "$partial" "$dirty"
done

# --- a full disk under apply (SQLite on a small tmpfs) -----------------------
# Each trial: a tmpfs of 8 MiB holding a store with a 400-server base, then a
# filler of a random size (0–6 MiB) and the N-server apply. Whatever the
# moment the disk fills: a one-line error naming the disk, the base intact,
# fsck clean; once the filler is removed a write works and fsck is clean.
if row fulldisk; then
  disk="$work/disk"; mkdir -p "$disk"
  "$C" generate --racks 10 --servers-per-rack 40 > "$work/base10.yaml"
  refused=0; applied=0; unclear=0; changed=0; dirty=0; stuck=0
  for t in $(seq "$TRIALS"); do
    mount -t tmpfs -o size=8m tmpfs "$disk"
    export CLUSTO_STORE="sqlite://$disk/c.db"
    "$C" apply -f "$work/base10.yaml" >/dev/null
    base=$("$C" query 'kind:server' -o name | grep -c . || true)
    head -c $(( RANDOM % 7 * 1048576 )) /dev/zero > "$disk/filler" 2>/dev/null || true
    if "$C" apply -f "$work/gen.yaml" >/dev/null 2>"$work/err"; then applied=$((applied + 1))
    else
      refused=$((refused + 1))
      { [ "$(wc -l < "$work/err")" = 1 ] && grep -q "^error: the disk holding $disk/c.db is full; nothing was changed" "$work/err"; } \
        || { unclear=$((unclear + 1)); head -2 "$work/err" | sed 's/^/   error: /'; }
      have=$("$C" query 'kind:server' -o name | grep -c . || true)
      [ "$have" = "$base" ] || { changed=$((changed + 1)); echo "   changed: $have servers, $base before"; }
    fi
    "$C" fsck >/dev/null 2>&1 || dirty=$((dirty + 1))
    rm -f "$disk/filler"
    "$C" create server "after-$t" >/dev/null 2>&1 || stuck=$((stuck + 1))
    "$C" fsck >/dev/null 2>&1 || dirty=$((dirty + 1))
    umount "$disk"
  done
  echo "== sqlite: full disk under apply ($N servers, 8 MiB tmpfs, random filler) × $TRIALS: refused $refused (not the one clear line: $unclear), applied $applied, changed anyway $changed, unusable after freeing $stuck; fsck not clean $dirty"
  found "$unclear" "$changed" "$stuck" "$dirty"
fi

# --- PostgreSQL restarted under dhcpd and apply -------------------------------
# A private PostgreSQL (initdb in a temporary directory, port 5499; the
# machine's own cluster is never touched). dhcpd serves 50 hosts on
# 127.0.0.1:11067 to a relay agent on 127.0.0.2:67 asking 200 times a second;
# each trial restarts PostgreSQL (pg_ctl restart -m fast) while an apply of
# one more host runs. Then: the apply either landed whole or failed with one
# line; dhcpd answered throughout from its last index (its
# clusto_dhcp_store_reachable metric said 0 meanwhile), reconnected by
# itself, and answers the new host; fsck clean.
if row pgrestart; then
  private_pg
  export CLUSTO_STORE="$PRIVATE_PG/postgres"
  python3 bench/dhcp_hosts.py "$work/macs" 50 > "$work/dhcp.yaml"
  "$C" apply -f "$work/dhcp.yaml" --apply-set base >/dev/null
  "$C" dhcpd --listen 127.0.0.1:11067 --server-id 127.0.0.1 --metrics 127.0.0.1:11467 --refresh-ms 100 2>"$work/dhcpd.log" &
  dhcpd=$!
  for _ in $(seq 100); do curl -sf 127.0.0.1:11467/readyz >/dev/null && break; sleep 0.1; done
  sent_all=0; answered_all=0; saw_stale=0; reconnected=0; clean_apply=0; unclear=0; half=0; dirty=0
  for t in $(seq "$TRIALS"); do
    python3 bench/dhcp_relay_client.py "$work/macs" 127.0.0.1:11067 127.0.0.2 200 4 > "$work/client" &
    client=$!
    sleep 0.5
    mac=$(printf '02:91:00:00:%02x:%02x' $((t / 256)) $((t % 256)))
    printf 'apiVersion: clusto.dev/v1alpha1\nkind: Server\nmetadata: {name: n%04d}\nspec:\n  datacenter: dc\n  ports: [{port: "nic-eth:1", mac: "%s"}]\n  addresses: [{address: 10.90.2.%d, manager: net, port: "nic-eth:1"}]\n' \
      "$t" "$mac" $(( t % 250 + 1 )) > "$work/new.yaml"
    "$C" apply -f "$work/new.yaml" --apply-set "new$t" >/dev/null 2>"$work/apply.err" &
    applier=$!
    pgctl restart -m fast &
    restarter=$!
    stale=0
    for _ in $(seq 30); do
      curl -sf 127.0.0.1:11467/metrics | grep -q '^clusto_dhcp_store_reachable 0' && stale=1
      sleep 0.1
    done
    wait "$restarter"
    if wait "$applier"; then clean_apply=$((clean_apply + 1))
    else
      [ "$(wc -l < "$work/apply.err")" = 1 ] || { unclear=$((unclear + 1)); head -2 "$work/apply.err" | sed 's/^/   apply: /'; }
      "$C" apply -f "$work/new.yaml" --apply-set "new$t" >/dev/null   # the retry an operator makes
    fi
    have=$("$C" query "name:n$(printf %04d "$t")" -o name | grep -c . || true)
    [ "$have" = 1 ] || half=$((half + 1))
    wait "$client"; read -r sent answered < "$work/client"
    sent_all=$((sent_all + sent)); answered_all=$((answered_all + answered)); saw_stale=$((saw_stale + stale))
    echo "$mac" > "$work/newmac"
    ok=0
    for _ in $(seq 50); do
      python3 bench/dhcp_relay_client.py "$work/newmac" 127.0.0.1:11067 127.0.0.2 20 0.2 > "$work/one"
      read -r s a < "$work/one"; [ "$a" -gt 0 ] && { ok=1; break; }
    done
    reconnected=$((reconnected + ok))
    "$C" fsck >/dev/null 2>&1 || dirty=$((dirty + 1))
  done
  kill "$dhcpd" 2>/dev/null; wait "$dhcpd" 2>/dev/null || true
  echo "== postgres restarted under dhcpd and an apply × $TRIALS: relay DISCOVERs answered $answered_all of $sent_all ($(python3 -c "print(f'{100*$answered_all/max($sent_all,1):.2f}')") %); stale metric seen in $saw_stale; dhcpd answered the new host after the restart in $reconnected; applies that landed at once $clean_apply (others failed with one line and landed on retry; not one line: $unclear); half-applied $half; fsck not clean $dirty"
  found "$unclear" "$half" "$dirty" $((sent_all - answered_all)) $((TRIALS - reconnected))
fi

# --- kill -9 of the controller converging and deleting 200 VMs (EC2 on moto) --
# Each trial: a fresh moto and store, 200 VirtualMachines (allowTermination)
# declared; `clusto controller` killed at a random moment of converging, then
# `controller --once`; all 200 deleted, the controller killed at a random
# moment of deleting, then `controller --once`. After converging: exactly
# 200 instances in moto, each VM's backendId one of them, none leaked;
# after deleting: no instance left running, no VM left; fsck clean.
MOTO=${MOTO_SERVER:-$HOME/.cache/moto-venv/bin/moto_server}
PY=$(dirname "$MOTO")/python
printf '[t]\naws_access_key_id = testing\naws_secret_access_key = testing\n' > "$work/aws"
instances() {  # running or pending instance ids in moto at $1
  "$PY" - "$1" <<'PY'
import boto3, sys
ec2 = boto3.client("ec2", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
for page in ec2.get_paginator("describe_instances").paginate():
    for r in page["Reservations"]:
        for i in r["Instances"]:
            if i["State"]["Name"] in ("pending", "running", "stopping", "stopped"):
                print(i["InstanceId"])
PY
}
start_moto() {  # sets moto (PID) and moto_url
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$MOTO" -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
  moto=$!; moto_url="http://127.0.0.1:$port"
  for _ in $(seq 100); do curl -s "$moto_url" >/dev/null && break; sleep 0.1; done
}
vms_manifest() {  # N → VMManager on $moto_url and N VirtualMachines
  python3 - "$moto_url" "$work/aws" "$1" <<'PY'
import sys
print(f"""apiVersion: clusto.dev/v1alpha1
kind: VMManager
metadata: {{name: aws}}
spec:
  backend: ec2
  ec2: {{region: us-east-1, endpoint: "{sys.argv[1]}", credentialsFile: "{sys.argv[2]}", profile: t}}""")
for i in range(int(sys.argv[3])):
    print(f"""---
apiVersion: clusto.dev/v1alpha1
kind: VirtualMachine
metadata: {{name: v{i:03d}}}
spec: {{manager: aws, image: ami-1e749f67, instanceType: t3.micro, allowTermination: true}}""")
PY
}
backend_ids() { "$C" vm list -o json | python3 -c 'import json,sys; print("\n".join(sorted(v["status"].get("backendId","") for v in json.load(sys.stdin)["items"])))'; }

if row controller; then
  kill_during() {  # MAX_MS: runs the controller, kills it -9 at a random moment
    "$C" controller --lease-ttl 1 --poll-ms 100 >/dev/null 2>&1 &
    local pid=$! ms=$(( RANDOM % ($1 + 1) ))
    sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
    kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    sleep 1.1   # the SQLite lease of the killed holder expires
  }
  once() { "$C" controller --once --lease-ttl 1 >/dev/null 2>&1; }
  for backend in $BACKENDS; do
  exact=0; leaked=0; lost=0; left=0; stale=0; dirty=0
  for t in $(seq "$TRIALS"); do
    start_moto
    export CLUSTO_STORE; CLUSTO_STORE=$(fresh "$backend")
    vms_manifest 200 > "$work/vms.yaml"
    "$C" apply -f "$work/vms.yaml" --apply-set vms >/dev/null
    kill_during 6000; once
    ids=$(instances "$moto_url" | sort)
    mine=$(backend_ids)
    n=$(echo "$ids" | grep -c . || true)
    if [ "$n" = 200 ] && [ "$ids" = "$mine" ]; then exact=$((exact + 1))
    elif [ "$n" -gt 200 ]; then leaked=$((leaked + 1)); echo "   leaked: $n instances for 200 VMs"
    else lost=$((lost + 1)); echo "   not exact: $n instances, $(echo "$mine" | grep -c . || true) backend ids"
    fi
    sed -n '1,6p' "$work/vms.yaml" > "$work/none.yaml"
    "$C" apply -f "$work/none.yaml" --apply-set vms --prune >/dev/null
    kill_during 6000; once
    n=$(instances "$moto_url" | grep -c . || true)
    [ "$n" = 0 ] || { left=$((left + 1)); echo "   after deleting: $n instances still up"; }
    vms=$("$C" query 'kind:virtualmachine' -o name | grep -c . || true)
    [ "$vms" = 0 ] || { stale=$((stale + 1)); echo "   after deleting: $vms VMs still in the inventory"; }
    "$C" fsck >/dev/null 2>&1 || dirty=$((dirty + 1))
    kill "$moto" 2>/dev/null; wait "$moto" 2>/dev/null || true
  done
  echo "== $backend + moto: kill -9 of the controller converging and deleting 200 VMs × $TRIALS: exactly one instance per VM $exact, leaked $leaked, missing $lost; after deleting: instances left $left, VMs left $stale; fsck not clean $dirty"
  found "$leaked" "$lost" "$left" "$stale" "$dirty"
  done
fi

# --- kill -9 of the controller on a real libvirtd with QEMU -------------------
# The libvirt test driver keeps its domains in the connecting process, so
# they die with a killed controller and "exactly once at the backend" could
# not fail; the row uses the real libvirtd (qemu:///system) instead, with
# tiny guests (64 MiB, no OS, a 1 GiB sparse volume each) in a transient
# directory pool per trial. Each trial: $VMS VirtualMachines declared, the
# controller killed -9 at a random moment of converging, `controller
# --once`; then all deleted (prune), killed again at a random moment,
# `--once`. After converging: exactly $VMS domains, each VM's backendId one
# of them; after deleting: no domain and no volume left, no VM left; fsck
# clean. Each trial's names are its own, so a leak cannot hide in the next.
if row libvirt; then
  LV=qemu:///system
  lv_domains() { virsh -c "$LV" list --all --uuid --name 2>/dev/null | awk -v p="$1" '$2 ~ "^"p {print $1}' | sort; }
  lv_manifest() {  # PREFIX POOL N → a host (sized for $VMS), a VMManager on it, N VMs
    python3 - "$1" "$2" "$3" "$LV" "$VMS" <<'PY'
import sys
prefix, pool, n, uri, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
print(f"""apiVersion: clusto.dev/v1alpha1
kind: Server
metadata: {{name: {prefix}hv}}
spec:
  attrs:
    - {{key: system, subkey: memory, value: {64 * size + 1024}}}
    - {{key: system, subkey: disk, value: {size + 10}}}
    - {{key: system, subkey: cpucount, value: {size}}}
    - {{key: libvirt, subkey: uri, value: "{uri}"}}
---
apiVersion: clusto.dev/v1alpha1
kind: VMManager
metadata: {{name: {prefix}mgr}}
spec:
  backend: libvirt
  libvirt: {{pool: {pool}}}
  hosts: [{prefix}hv]""")
for i in range(n):
    print(f"""---
apiVersion: clusto.dev/v1alpha1
kind: VirtualMachine
metadata: {{name: {prefix}v{i:03d}}}
spec:
  manager: {prefix}mgr
  cpus: 1
  memoryMiB: 64
  diskGiB: 1
  allowTermination: true
  attrs:
    - {{key: libvirt, subkey: domain-type, value: qemu}}""")
PY
  }
  lv_kill_during() {  # MAX_MS
    "$C" controller --lease-ttl 1 --poll-ms 100 >/dev/null 2>&1 &
    local pid=$! ms=$(( RANDOM % ($1 + 1) ))
    sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
    kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    sleep 1.1
  }
  for backend in $BACKENDS; do
  exact=0; leaked=0; lost=0; left=0; vols=0; stale=0; dirty=0
  for t in $(seq "$TRIALS"); do
    prefix="ft$$t${t}x"; pool="clusto-faults-$$-$t"; pooldir="$work/$pool"
    mkdir -p "$pooldir"
    virsh -c "$LV" pool-create-as "$pool" dir --target "$pooldir" >/dev/null
    export CLUSTO_STORE; CLUSTO_STORE=$(fresh "$backend")
    lv_manifest "$prefix" "$pool" "$VMS" > "$work/lv.yaml"
    "$C" apply -f "$work/lv.yaml" --apply-set lv >/dev/null
    lv_kill_during 4000; "$C" controller --once --lease-ttl 1 >/dev/null 2>&1 || true
    doms=$(lv_domains "$prefix")
    mine=$("$C" vm list -o json | python3 -c 'import json,sys; print("\n".join(sorted(v["status"].get("backendId","") for v in json.load(sys.stdin)["items"])))')
    n=$(echo "$doms" | grep -c . || true)
    if [ "$n" = "$VMS" ] && [ "$doms" = "$mine" ]; then exact=$((exact + 1))
    elif [ "$n" -gt "$VMS" ]; then leaked=$((leaked + 1)); echo "   leaked: $n domains for $VMS VMs"
    else lost=$((lost + 1)); echo "   not exact: $n domains, $(echo "$mine" | grep -c . || true) backend ids"
    fi
    lv_manifest "$prefix" "$pool" 0 > "$work/lv-none.yaml"
    "$C" apply -f "$work/lv-none.yaml" --apply-set lv --prune >/dev/null
    lv_kill_during 4000; "$C" controller --once --lease-ttl 1 >/dev/null 2>&1 || true
    n=$(lv_domains "$prefix" | grep -c . || true)
    [ "$n" = 0 ] || { left=$((left + 1)); echo "   after deleting: $n domains still defined"; }
    v=$(virsh -c "$LV" vol-list "$pool" 2>/dev/null | grep -c "$prefix" || true)
    [ "$v" = 0 ] || { vols=$((vols + 1)); echo "   after deleting: $v volumes left"; }
    nvm=$("$C" query 'kind:virtualmachine' -o name | grep -c . || true)
    [ "$nvm" = 0 ] || { stale=$((stale + 1)); echo "   after deleting: $nvm VMs still in the inventory"; }
    "$C" fsck >/dev/null 2>&1 || dirty=$((dirty + 1))
    # Whatever a violation left behind goes before the next trial.
    for d in $(lv_domains "$prefix"); do virsh -c "$LV" destroy "$d" >/dev/null 2>&1 || true; virsh -c "$LV" undefine "$d" --remove-all-storage >/dev/null 2>&1 || true; done
    virsh -c "$LV" pool-destroy "$pool" >/dev/null 2>&1 || true
    rm -rf "$pooldir"
  done
  echo "== $backend + libvirtd (QEMU): kill -9 of the controller converging and deleting $VMS VMs × $TRIALS: exactly one domain per VM $exact, leaked $leaked, missing $lost; after deleting: domains left $left, volumes left $vols, VMs left $stale; fsck not clean $dirty"
  found "$leaked" "$lost" "$left" "$vols" "$stale" "$dirty"
  done
fi

# --- kill -9 of dhcpd while it records learnt MACs ---------------------------
# 40 new devices per trial announce their bootstrap.mac (DISCOVERs from a
# relay agent on loopback, 400/s); dhcpd (--learn-ipmi) records each MAC on
# the device's NIC 1 and is killed -9 at a random moment. Every device must
# have its own MAC recorded or none (never another, never half), and fsck
# is clean; a restarted dhcpd learns the rest.
if row dhcpd; then
  for backend in $BACKENDS; do
    export CLUSTO_STORE; CLUSTO_STORE=$(fresh "$backend")
    python3 - "$TRIALS" > "$work/learn.yaml" <<'PY'
import sys
print("""apiVersion: clusto.dev/v1alpha1
kind: Datacenter
metadata: {name: dc}
spec:
  attrs:
    dhcp: {enabled: true}""")
for t in range(int(sys.argv[1])):
    for i in range(40):
        print(f"""---
apiVersion: clusto.dev/v1alpha1
kind: Server
metadata: {{name: l{t:04d}-{i:02d}}}
spec:
  datacenter: dc
  attrs:
    bootstrap: {{mac: "02:77:{t // 256:02x}:{t % 256:02x}:00:{i:02x}"}}""")
PY
    "$C" apply -f "$work/learn.yaml" >/dev/null
    learnt=0; wrong=0; dirty=0; relearnt=0
    for t in $(seq 0 $((TRIALS - 1))); do
      for i in $(seq 0 39); do printf '02:77:%02x:%02x:00:%02x\n' $((t / 256)) $((t % 256)) "$i"; done > "$work/learn.macs"
      "$C" dhcpd --learn-ipmi --listen 127.0.0.1:11068 --server-id 127.0.0.1 --metrics 127.0.0.1:11468 2>/dev/null &
      d=$!
      for _ in $(seq 100); do curl -sf 127.0.0.1:11468/readyz >/dev/null && break; sleep 0.05; done
      python3 bench/dhcp_relay_client.py "$work/learn.macs" 127.0.0.1:11068 127.0.0.3 400 1 >/dev/null &
      cl=$!
      ms=$(( 50 + RANDOM % 400 ))
      sleep "$(printf '0.%03d' "$ms")"
      kill -9 "$d" 2>/dev/null || true; wait "$d" 2>/dev/null || true
      kill "$cl" 2>/dev/null || true; wait "$cl" 2>/dev/null || true
      read -r ok bad < <("$C" get servers -o json | python3 -c '
import json, sys
t = sys.argv[1]
ok = bad = 0
for s in json.load(sys.stdin)["items"]:
    if not s["metadata"]["name"].startswith("l%04d-" % int(t)):
        continue
    boot = next(a["value"] for a in s["spec"].get("attrs", []) if a["key"] == "bootstrap")
    macs = [p.get("mac") for p in s["spec"].get("ports", []) if p["port"] == "nic-eth:1" and p.get("mac")]
    if macs == [boot]: ok += 1
    elif macs: bad += 1
print(ok, bad)' "$t")
      learnt=$((learnt + ok)); wrong=$((wrong + bad))
      "$C" fsck >/dev/null 2>&1 || dirty=$((dirty + 1))
    done
    echo "== $backend: kill -9 of dhcpd learning MACs × $TRIALS (40 devices each): learnt $learnt of $((TRIALS * 40)) before the kill, wrong or partial $wrong; fsck not clean $dirty"
    found "$wrong" "$dirty"
  done
fi

# --- PostgreSQL restarted under the controller (EC2 on moto) -----------------
# Each trial: a fresh database in the private cluster, a fresh moto, 100
# VirtualMachines; one `clusto controller` (long-running) converges them
# while PostgreSQL is restarted (`pg_ctl restart -m fast`) at a random
# moment of its first 4 s; then all VMs are pruned and PostgreSQL restarted
# again while it deletes. The same controller process must carry on by
# itself (no restart by us): every VM with exactly one instance, none
# leaked, then none left; fsck clean.
if row pgcontroller; then
  private_pg
  settle() {  # PRED_CMD… : waits up to 90 s for the command to succeed
    for _ in $(seq 900); do "$@" && return 0; sleep 0.1; done; return 1
  }
  converged() {
    [ "$(backend_ids | grep -c '^i-' || true)" = 100 ] && [ "$(instances "$moto_url" | grep -c . || true)" = 100 ]
  }
  emptied() {
    [ "$("$C" query 'kind:virtualmachine' -o name 2>/dev/null | grep -c . || true)" = 0 ] && [ "$(instances "$moto_url" | grep -c . || true)" = 0 ]
  }
  restart_within() {  # MAX_MS
    local ms=$(( RANDOM % ($1 + 1) ))
    sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"; pgctl restart -m fast
  }
  exact=0; leaked=0; slow=0; left=0; died=0; dirty=0; recovered=0
  for t in $(seq "$TRIALS"); do
    db=clusto_pgc_$t
    psql "$PRIVATE_PG/postgres" -qAt -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
    export CLUSTO_STORE="$PRIVATE_PG/$db"
    start_moto
    vms_manifest 100 > "$work/vms.yaml"
    "$C" apply -f "$work/vms.yaml" --apply-set vms >/dev/null
    CLUSTO_LOG=info "$C" controller --poll-ms 100 2>"$work/controller.log" >/dev/null &
    ctl=$!
    restart_within 4000
    if settle converged; then
      ids=$(instances "$moto_url" | sort); [ "$ids" = "$(backend_ids)" ] && exact=$((exact + 1)) || { leaked=$((leaked + 1)); echo "   not exact after converging"; }
    else slow=$((slow + 1)); echo "   not converged in 90 s: $(backend_ids | grep -c '^i-' || true) backend ids, $(instances "$moto_url" | grep -c . || true) instances"
    fi
    sed -n '1,6p' "$work/vms.yaml" > "$work/none.yaml"
    until "$C" apply -f "$work/none.yaml" --apply-set vms --prune >/dev/null 2>&1; do sleep 0.2; done
    restart_within 2000
    settle emptied || { left=$((left + 1)); echo "   after deleting: $(instances "$moto_url" | grep -c . || true) instances, $("$C" query 'kind:virtualmachine' -o name | grep -c . || true) VMs"; }
    kill -0 "$ctl" 2>/dev/null || { died=$((died + 1)); echo "   the controller exited:"; tail -3 "$work/controller.log" | sed 's/^/     /'; }
    grep -qE 'WARN|ERROR' "$work/controller.log" && recovered=$((recovered + 1))
    [ -z "${KEEP_LOG:-}" ] || cp "$work/controller.log" "$KEEP_LOG.$t"
    kill "$ctl" 2>/dev/null; wait "$ctl" 2>/dev/null || true
    "$C" fsck >/dev/null 2>&1 || dirty=$((dirty + 1))
    kill "$moto" 2>/dev/null; wait "$moto" 2>/dev/null || true
    psql "$PRIVATE_PG/postgres" -qAt -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  done
  echo "== postgres restarted under the controller (100 EC2 VMs on moto, converge then delete) × $TRIALS: exactly one instance per VM $exact, not exact $leaked, not converged in 90 s $slow; after deleting, left over $left; controller exited $died; warned of the store in its log $recovered; fsck not clean $dirty"
  found "$leaked" "$slow" "$left" "$died" "$dirty"
fi
[ "$violations" = 0 ] || { echo "violations found: $violations"; exit 1; }
