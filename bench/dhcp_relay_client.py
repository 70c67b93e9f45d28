#!/usr/bin/env python3
"""A DHCP relay agent on loopback asking for known hosts: sends DISCOVERs
with giaddr=RELAY for the MACs in MACFILE (one per line) to SERVER at RATE
per second for SECS seconds, from RELAY:67, and counts OFFERs.
Prints "sent answered". Usage: dhcp_relay_client.py MACFILE SERVER:PORT RELAY RATE SECS"""
import os
import socket
import struct
import sys
import time

macs = [bytes.fromhex(l.strip().replace(":", "")) for l in open(sys.argv[1]) if l.strip()]
host, port = sys.argv[2].rsplit(":", 1)
relay, rate, secs = sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((relay, 67))
s.setblocking(False)


def discover(xid, mac):
    head = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 1, xid, 0, 0,
                       bytes(4), bytes(4), bytes(4), socket.inet_aton(relay),
                       mac.ljust(16, b"\0"), bytes(64), bytes(128))
    return head + b"\x63\x82\x53\x63" + b"\x35\x01\x01" + b"\xff"


sent = answered = 0
pending = set()
start = time.time()
nxt = start
while time.time() - start < secs:
    now = time.time()
    if now >= nxt:
        xid = (os.getpid() << 16 ^ sent) & 0xFFFFFFFF
        s.sendto(discover(xid, macs[sent % len(macs)]), (host, int(port)))
        pending.add(xid)
        sent += 1
        nxt += 1.0 / rate
    try:
        d, _ = s.recvfrom(2048)
        if len(d) > 240 and d[0] == 2:
            xid = struct.unpack("!I", d[4:8])[0]
            if xid in pending:
                pending.discard(xid)
                answered += 1
    except BlockingIOError:
        time.sleep(0.0005)
time.sleep(0.3)
while True:
    try:
        d, _ = s.recvfrom(2048)
        xid = struct.unpack("!I", d[4:8])[0]
        if xid in pending:
            pending.discard(xid)
            answered += 1
    except BlockingIOError:
        break
print(sent, answered)
