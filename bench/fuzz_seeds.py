#!/usr/bin/env python3
"""Seed inputs for the coverage-guided fuzzers (fuzz/), written under DIR/<target>/.
Usage: fuzz_seeds.py DIR CLUSTO_BINARY REPO
Real peers where one exists: SNMP datagrams are what net-snmp's snmptrap sends
(v1, v2c, v3 authPriv) read off a loopback socket, a plan file is what
`clusto plan --out` writes."""
import os
import socket
import struct
import subprocess
import sys
import tempfile

out, clusto, repo = sys.argv[1:4]


def put(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# manifests: the repository's examples, one file each
for root, _, files in os.walk(os.path.join(repo, "manifests")):
    for f in sorted(files):
        with open(os.path.join(root, f), "rb") as fh:
            put("manifest", f, fh.read())

# query
for i, q in enumerate([
    "kind:server and in:dc1 and not attr:system.disk=0",
    "(name:s* or driver:basicserver) and connected-to:sw1",
    'attr:owner="team a" or attr:foo,12',
    "pool:web and ip:10.0.0.0/8",
]):
    put("query", f"q{i}", q)

# planfile: what `clusto plan --out` writes for the examples
with tempfile.TemporaryDirectory() as t:
    plan = os.path.join(t, "plan.json")
    subprocess.run([clusto, "--store", f"sqlite://{t}/s.db", "plan", "-f",
                    os.path.join(repo, "manifests"), "--out", plan],
                   check=True, capture_output=True)
    with open(plan, "rb") as fh:
        put("planfile", "examples.json", fh.read())


# dhcp: DISCOVER and REQUEST for the fuzz inventory's MACs, direct and relayed
def dhcp(mtype, mac, giaddr=b"\0" * 4, extra=b""):
    head = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, 0x1234, 0, 0x8000,
                       bytes(4), bytes(4), bytes(4), giaddr,
                       mac.ljust(16, b"\0"), bytes(64), bytes(128))
    opts = bytes([53, 1, mtype]) + extra + b"\x37\x04\x01\x03\x06\x0f" + b"\xff"
    return head + b"\x63\x82\x53\x63" + opts


for n in (1, 2, 3, 9):
    mac = bytes([2, 0, 0, 0, 0, n])
    put("dhcp", f"discover{n}", dhcp(1, mac))
    put("dhcp", f"request{n}", dhcp(3, mac, extra=b"\x32\x04\x0a\x4d\x00\x14\x36\x04\x0a\x4d\x00\x02"))
    put("dhcp", f"relayed{n}", dhcp(1, mac, giaddr=socket.inet_aton("10.77.0.1"),
                                   extra=b"\x3c\x09PXEClient\x52\x06\x01\x04abcd"))

# snmp: the stored capture, and what snmptrap sends now
with open(os.path.join(repo, "crates/clusto-snmp/tests/data/cmn-trap-v2c.hex")) as fh:
    put("snmp", "stored-v2c", bytes.fromhex("".join(fh.read().split())))
CMN = "1.3.6.1.4.1.9.9.215.2.0.1"
HIST = "1.3.6.1.4.1.9.9.215.1.1.8.1.2.1"
REC = "0x010001020304050600070000"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.settimeout(2)
to = f"127.0.0.1:{s.getsockname()[1]}"
senders = {
    "v2c": ["snmptrap", "-m", "", "-v", "2c", "-c", "public", to, "", CMN, HIST, "x", REC],
    "v1": ["snmptrap", "-m", "", "-v", "1", "-c", "public", to, "1.3.6.1.4.1.9.9.215.2",
           "127.0.0.1", "6", "1", "", HIST, "x", REC],
    "v3": ["snmptrap", "-m", "", "-v", "3", "-u", "alice", "-l", "authPriv", "-a", "SHA-256",
           "-A", "alicepass1", "-x", "AES", "-X", "alicepriv1", "-e", "0x8000000001020304",
           to, "", CMN, HIST, "x", REC],
}
for name, argv in senders.items():
    try:
        subprocess.run(argv, check=True, capture_output=True, timeout=10)
        put("snmp", name, s.recvfrom(65535)[0])
    except (OSError, subprocess.SubprocessError) as e:
        print(f"fuzz_seeds: no {name} capture ({e}); the stored one remains", file=sys.stderr)

# api: one request each (first line METHOD TARGET, then the body)
B = "/apis/clusto.dev/v1alpha1"
with open(os.path.join(repo, "manifests/datacenter.yaml")) as fh:
    dc = fh.read()
for i, r in enumerate([
    f"GET {B}/servers?limit=2",
    f"GET {B}/servers?query=kind:server%20and%20in:sv3-001",
    f"GET {B}/racks/sv3-001",
    f"GET {B}/servers/s0000/attributes?merged=true",
    f"GET {B}/servers/s0000/history",
    f"GET {B}/revisions?limit=3",
    "GET /openapi/v3",
    f"POST {B}/plan?applySet=fuzz&prune=true\n{dc}",
    f"POST {B}/apply?dryRun=All\n{dc}",
    f"POST {B}/apply?applySet=fuzz\n{{\"apiVersion\":\"clusto.dev/v1alpha1\",\"kind\":\"Server\",\"metadata\":{{\"name\":\"fz1\"}}}}",
    f"anon GET {B}/servers",
]):
    put("api", f"r{i}", r)
