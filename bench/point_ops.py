"""Driver of bench/point-ops.sh: times whole `clusto` processes.

Each operation runs 5 times as its own process; the table shows the median
wall time and the largest peak RSS (from wait4's rusage), at 1,000 servers
and at N, per backend and per binary ("now", and "before" when built).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

# (label, first command, command that undoes it or None). S is a server in
# the middle of the inventory, R its rack, P its pool.
OPS = [
    ("get server S", "get server S", None),
    ("describe S", "describe S", None),
    ("attr get S --merged", "attr get S --merged", None),
    ("attr set S owner alice", "attr set S owner alice", "attr del S owner"),
    ("locate S", "locate S", None),
    ("parents S", "parents S", None),
    ("contents R", "contents R", None),
    ("port set S nic-eth:1 mac …", "port set S nic-eth:1 mac 02:00:00:00:00:01", "port unset S nic-eth:1 mac"),
    ("ip release S", "ip release S", "ip allocate gen-net S"),
    ("ip allocate gen-net S", "ip allocate gen-net S", "ip release S"),
    ("remove S from its pool", "remove P S", "insert P S"),
    ("insert S into a pool (join)", "insert P S", "remove P S"),
    ("rename S", "rename S S-x", "rename S-x S"),
    # Rack unit 45 is free in every generated rack (40 servers per rack).
    ("create server in R", "create server bench-tmp --in R --ru 45", "delete bench-tmp"),
    ("delete a server", "delete bench-tmp", "create server bench-tmp --in R --ru 45"),
    ("name allocate", "name allocate bench-names --kind server", None),
    ("--at REV get server S", "get server S --at 1", None),
    ("history (default 50)", "history", None),
]


def run(cmd):
    """Wall seconds and peak RSS (MiB) of one process; stdout discarded."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    err = p.stderr.read().decode()
    p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {err.strip()}")
    return wall, ru.ru_maxrss / 1024


def store_url(backend, pg, name, work):
    if backend == "sqlite":
        return f"sqlite://{work}/{name}.db"
    db = f"clusto_bench_{name}"
    subprocess.run(["psql", pg, "-qAt", "-c", f"DROP DATABASE IF EXISTS {db}"], check=True)
    subprocess.run(["psql", pg, "-qAt", "-c", f"CREATE DATABASE {db}"], check=True)
    return pg.rsplit("/", 1)[0] + "/" + db


def drop(backend, pg, name):
    if backend == "postgres":
        subprocess.run(["psql", pg, "-qAt", "-c", f"DROP DATABASE IF EXISTS clusto_bench_{name}"], check=True)


def generate(binary, racks, work, per_file=100000):
    """The generated inventory as a directory of manifest files, each under
    the 128 MiB a manifest file may be (1,000,000 servers are 281 MiB).
    Streamed line by line: this process stays small, and so do the peak
    RSS figures of the processes it starts (Linux counts a child's memory
    from before its exec)."""
    gen = os.path.join(work, "gen")
    os.makedirs(gen)
    part, docs = 0, 0
    f = open(os.path.join(gen, "part-0000.yaml"), "wb")
    p = subprocess.Popen([binary, "generate", "--racks", str(racks), "--servers-per-rack", "40"],
                         stdout=subprocess.PIPE)
    for line in p.stdout:
        if line == b"---\n":
            docs += 1
            if docs == per_file:
                f.close()
                part, docs = part + 1, 0
                f = open(os.path.join(gen, f"part-{part:04d}.yaml"), "wb")
                continue
        f.write(line)
    f.close()
    if p.wait() != 0:
        raise SystemExit("clusto generate failed")
    return gen


def measure(binary, url, servers, work):
    """{label: (median s, max MiB)} for one binary on one inventory."""
    c = lambda args: [binary, "--store", url] + args
    racks = max(1, servers // 40)
    gen = generate(binary, racks, work)
    out = {"apply": run(c(["apply", "-f", gen]))}
    if url.startswith("postgres"):
        # What autovacuum does within minutes of a bulk load, done now, so
        # its vacuum and analyze of 100,000s of new rows do not share the
        # 2 cores with the commands measured (it otherwise starts at a
        # random point among them) and the planner has statistics.
        out["VACUUM (ANALYZE) after apply"] = run(["psql", url, "-qAt", "-c", "VACUUM (ANALYZE)"])
    out["no-op plan"] = run(c(["plan", "-f", gen]))
    run(c(["create", "namemanager", "bench-names", "--set", "basename=bench-", "--set", "digits=7"]))
    mid = servers // 2 + 5
    s, r = f"gen-s{mid:07d}", f"gen-r{mid // 40:05d}"
    p = ["gen-web", "gen-db", "gen-cache"][mid % 3]
    run(c(["attr", "del", s, "owner"]))
    for label, first, undo in OPS:
        fill = lambda t: t.replace("S", s).replace("R", r).replace("P", p).split()
        first = fill(first)
        undo = fill(undo) if undo else None
        # Some ops start from the undone state: bring it about first.
        if label.startswith("insert") or label.startswith("delete"):
            run(c(undo))
        times, peak = [], 0.0
        for _ in range(5):
            t, m = run(c(first))
            times.append(t)
            peak = max(peak, m)
            if undo:
                run(c(undo))
        if label.startswith("insert") or label.startswith("delete"):
            run(c(first))
        out[label] = (statistics.median(times), peak)
    out["get server (all)"] = run(c(["get", "server", "-o", "name"]))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bins", required=True)
    ap.add_argument("--servers", type=int, default=100000)
    ap.add_argument("--backends", default="sqlite postgres")
    ap.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432/postgres")
    a = ap.parse_args()
    bins = [b for b in ("before", "now") if os.path.exists(os.path.join(a.bins, b))]
    sizes = [1000, a.servers]
    for backend in a.backends.split():
        res = {}
        for b in bins:
            for n in sizes:
                with tempfile.TemporaryDirectory() as work:
                    name = f"{b}_{n}"
                    url = store_url(backend, a.pg, name, work)
                    print(f"… {backend} {b} {n:,} servers", file=sys.stderr)
                    res[b, n] = measure(os.path.join(a.bins, b), url, n, work)
                    drop(backend, a.pg, name)
        big = a.servers
        print(f"\n### {backend}: 1,000 vs {big:,} servers (median of 5 processes; peak RSS)\n")
        head = "| operation |"
        for b in bins:
            head += f" {b} 1k | {b} {big // 1000}k | {b} ratio | {b} RSS {big // 1000}k |"
        print(head)
        print("|---|" + "---:|---:|---:|---:|" * len(bins))
        for label in res[bins[0], 1000]:
            line = f"| {label} |"
            for b in bins:
                t1, _ = res[b, 1000][label]
                tb, mb = res[b, big][label]
                line += f" {t1 * 1000:.0f} ms | {tb * 1000:.0f} ms | {tb / t1:.2f}× | {mb:.0f} MiB |"
            print(line)


if __name__ == "__main__":
    main()
