#!/usr/bin/env python3
"""A DHCP-enabled datacenter with N servers, each with a MAC on NIC 1 and an
address from 10.90.0.0/16, as manifests on stdout; the MACs, one per line,
to MACS_FILE (what bench/dhcp_relay_client.py asks for).
Usage: dhcp_hosts.py MACS_FILE [N=50]"""
import sys

macs = open(sys.argv[1], "w")
n = int(sys.argv[2]) if len(sys.argv) > 2 else 50
print("""apiVersion: clusto.dev/v1alpha1
kind: IPManager
metadata: {name: net}
spec: {cidr: 10.90.0.0/16, gateway: 10.90.0.1}
---
apiVersion: clusto.dev/v1alpha1
kind: Datacenter
metadata: {name: dc}
spec:
  attrs:
    dhcp: {enabled: true}""")
for i in range(n):
    mac = "02:90:00:00:%02x:%02x" % (i // 256, i % 256)
    macs.write(mac + "\n")
    print(f"""---
apiVersion: clusto.dev/v1alpha1
kind: Server
metadata: {{name: d{i:03d}}}
spec:
  datacenter: dc
  ports: [{{port: "nic-eth:1", mac: "{mac}"}}]
  addresses: [{{address: 10.90.{1 + (i + 10) // 256}.{(i + 10) % 256}, manager: net, port: "nic-eth:1"}}]""")
