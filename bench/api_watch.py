#!/usr/bin/env python3
"""100 watchers of `clusto serve`: each holds a watch on servers from the
head; then one `clusto attr set` is committed, and the time from the
command's return (the commit is just before it) until each watcher reads its
MODIFIED event is taken. Also reported from the command's start (an upper
bound that includes process start and the write itself).
Usage: api_watch.py BASE_URL CLUSTO SERVER N"""
import http.client, json, subprocess, sys, threading, time, urllib.parse, urllib.request

base, clusto, server, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
u = urllib.parse.urlparse(base)
head = json.loads(urllib.request.urlopen(base + "/revisions?limit=1").read())["items"][0]["revision"]
arrived = [None] * n
ready = threading.Barrier(n + 1)

def watcher(i):
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    c.request("GET", f"{u.path}/servers?watch=true&resourceVersion={head}")
    r = c.getresponse()
    ready.wait()
    while True:
        line = r.readline()
        if not line:
            return
        ev = json.loads(line)
        if ev["type"] == "MODIFIED" and ev["object"]["metadata"]["name"] == server:
            arrived[i] = time.monotonic()
            return

threads = [threading.Thread(target=watcher, args=(i,), daemon=True) for i in range(n)]
for t in threads:
    t.start()
ready.wait()
time.sleep(0.5)
t_start = time.monotonic()
subprocess.run([clusto, "attr", "set", server, "bench.watch", str(time.time())], check=True, stdout=subprocess.DEVNULL)
t_commit = time.monotonic()
for t in threads:
    t.join(10)
got = [a for a in arrived if a is not None]
after = sorted(max(0.0, a - t_commit) * 1000 for a in got)
total = sorted((a - t_start) * 1000 for a in got)
pct = lambda v, p: v[min(len(v) - 1, int(len(v) * p))] if v else float("nan")
print(f"100 watchers:          {len(got)}/{n} saw the change; after the commit: median {pct(after, .5):.1f} ms, "
      f"max {after[-1] if after else float('nan'):.1f} ms; from the command's start: max {total[-1] if total else float('nan'):.1f} ms")
