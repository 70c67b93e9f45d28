#!/usr/bin/env python3
"""The power benchmark's inventory: SERVERS servers, each with one power
supply cabled to an outlet of a PowerTower XM (16 outlets each) at
127.0.2.N:PORT, declared POWER; and BMCS more servers with a BMC each at
127.0.3.N:PORT (credentials env:BENCH_BMC), declared POWER.
Usage: power_world.py SERVERS BMCS POWER PORT BMC_PORT"""
import sys

servers, bmcs, power, port, bmc_port = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
pdus = (servers + 15) // 16
out = ["""apiVersion: clusto.dev/v1alpha1
kind: IPManager
metadata: {name: lo}
spec: {cidr: 127.0.0.0/16}"""]
for p in range(pdus):
    out.append("""apiVersion: clusto.dev/v1alpha1
kind: PowerStrip
metadata: {name: pdu%d}
spec:
  driver: powertowerxm
  addresses: [{manager: lo, address: 127.0.2.%d}]
  attrs:
    - {key: snmp, subkey: community, value: private}
    - {key: snmp, subkey: port, value: %s}""" % (p, p + 1, port))
for s in range(servers):
    out.append("""apiVersion: clusto.dev/v1alpha1
kind: Server
metadata: {name: s%04d}
spec:
  powerState: %s
  ports: [{port: "pwr-nema-5:1", connectedTo: "pdu%d:pwr-nema-5:%d"}]""" % (s, power, s // 16, s % 16 + 1))
for b in range(bmcs):
    out.append("""apiVersion: clusto.dev/v1alpha1
kind: Server
metadata: {name: b%04d}
spec:
  powerState: %s
  addresses: [{manager: lo, address: 127.0.3.%d, osPort: ipmi}]
  attrs:
    - {key: ipmi, subkey: port, value: %s}
    - {key: ipmi, subkey: credentials, value: "env:BENCH_BMC"}""" % (b, power, b + 1, bmc_port))
print("\n---\n".join(out))
