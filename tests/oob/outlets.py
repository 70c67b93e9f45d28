#!/usr/bin/env python3
"""snmpd pass_persist program: a PDU's outlets, under two vendors' OIDs.

Outlet N's state lives in STATE/outlet-N ("on" or "off", missing = off);
a file STATE/refuse-N makes sets of outlet N fail with genErr; every
accepted set is appended to STATE/sets as "N VALUE", every get of an
outlet to STATE/gets as "N".

- ServerTech Sentry PowerTower XM (the built-in powertowerxm driver):
  outletStatus .1.3.6.1.4.1.1718.3.2.3.1.10.1.1.N (5 on, 4 off) and
  outletControlAction ...1.11.1.1.N (set 1 on, 2 off, 3 reboot; reads 0).
- APC PowerNet sPDUOutletCtl .1.3.6.1.4.1.318.1.1.4.4.2.1.3.N, read and
  set alike (1 on, 2 off, 3 reboot): a vendor only a user-defined Driver
  knows.
"""
import os
import sys

OUTLETS = 16
state = sys.argv[1]

# column OID prefix -> (value when on, value when off, writable)
SENTRY = ".1.3.6.1.4.1.1718.3.2.3.1"
APC = ".1.3.6.1.4.1.318.1.1.4.4.2.1.3"
TABLES = {
    SENTRY + ".10.1.1": (5, 4, False),
    SENTRY + ".11.1.1": (0, 0, True),
    APC: (1, 2, True),
}


def path(kind, n):
    return os.path.join(state, "%s-%d" % (kind, n))


def is_on(n):
    try:
        with open(path("outlet", n)) as f:
            return f.read().strip() == "on"
    except OSError:
        return False


def key(oid):
    return [int(x) for x in oid.strip(".").split(".") if x.isdigit()]


def parse(oid):
    table, _, n = oid.rpartition(".")
    if table not in TABLES or not n.isdigit() or not 1 <= int(n) <= OUTLETS:
        return None
    return table, int(n)


def answer(table, n):
    on, off, _ = TABLES[table]
    return "%s.%d\ninteger\n%d" % (table, n, on if is_on(n) else off)


def every_oid():
    return sorted(((t, n) for t in TABLES for n in range(1, OUTLETS + 1)),
                  key=lambda tn: key("%s.%d" % tn))


def set_outlet(table, n, kind_value):
    if not TABLES[table][2]:
        return "not-writable"
    if len(kind_value) != 2 or kind_value[0] != "integer":
        return "wrong-type"
    v = kind_value[1]
    if v not in ("1", "2", "3"):
        return "wrong-value"
    if os.path.exists(path("refuse", n)):
        return "gen-error"
    with open(path("outlet", n), "w") as f:
        f.write("off\n" if v == "2" else "on\n")
    with open(os.path.join(state, "sets"), "a") as f:
        f.write("%d %s\n" % (n, v))
    return "DONE"


def handle(cmd, read):
    if cmd == "PING":
        return "PONG"
    if cmd == "get":
        hit = parse(read())
        if not hit:
            return "NONE"
        with open(os.path.join(state, "gets"), "a") as f:
            f.write("%d\n" % hit[1])
        return answer(*hit)
    if cmd == "getnext":
        want = key(read())
        for t, n in every_oid():
            if key("%s.%d" % (t, n)) > want:
                return answer(t, n)
        return "NONE"
    if cmd == "set":
        hit = parse(read())
        kind_value = read().split()
        return set_outlet(hit[0], hit[1], kind_value) if hit else "not-writable"
    return "NONE"


def main():
    stdin = sys.stdin
    while True:
        line = stdin.readline()
        if not line:
            return
        if not line.strip():
            continue  # snmpd ends a set with an empty line; it wants no answer
        sys.stdout.write(handle(line.strip(), lambda: stdin.readline().strip()) + "\n")
        sys.stdout.flush()


main()
