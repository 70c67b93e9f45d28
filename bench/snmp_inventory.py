"""Manifests for the SNMP benchmarks (bench/snmp.sh, bench/faults.sh):
RACKS racks of 40 servers, each cabled with its MAC to its rack's switch,
whose address is snmp-load's switch_ip(r) (127.64.0.10 + r); then EMPTY
racks with only a switch, whose layout slots discovery fills.

usage: python3 bench/snmp_inventory.py RACKS EMPTY > dc.yaml
"""
import sys, ipaddress
racks, empty = int(sys.argv[1]), int(sys.argv[2])
w = sys.stdout.write
def switch_ip(r):  # snmp-load's switch_ip()
    return str(ipaddress.IPv4Address("127.64.0.10") + r)
w("""apiVersion: clusto.dev/v1alpha1
kind: Datacenter
metadata: {name: gen-dc1}
spec:
  attrs:
    dhcp: {enabled: true}
    snmp: {discovery: true}
---
apiVersion: clusto.dev/v1alpha1
kind: IPManager
metadata: {name: gen-net}
spec: {cidr: 10.64.0.0/12, gateway: 10.64.0.1}
---
apiVersion: clusto.dev/v1alpha1
kind: IPManager
metadata: {name: gen-mgmt}
spec: {cidr: 127.64.0.0/16}
---
apiVersion: clusto.dev/v1alpha1
kind: NameManager
metadata: {name: servernames}
spec: {basename: disc-, digits: 6}
---
apiVersion: clusto.dev/v1alpha1
kind: RackLayout
metadata: {name: gen-l}
spec:
  serverSlots:
""")
for u in range(1, 41):
    w(f'    - {{switch: "{{rack}}-sw1", switchPort: {u}, ru: {u}, addresses: [{{manager: gen-net, osPort: eth0, port: "nic-eth:1"}}]}}\n')
n = 0
for r in range(racks + empty):
    rack = f"gen-r{r:05d}"
    w(f"---\napiVersion: clusto.dev/v1alpha1\nkind: Rack\nmetadata: {{name: {rack}}}\nspec: {{datacenter: gen-dc1, layout: gen-l}}\n")
    w(f"---\napiVersion: clusto.dev/v1alpha1\nkind: NetworkSwitch\nmetadata: {{name: {rack}-sw1}}\nspec:\n  rack: {rack}\n  ru: 42\n  addresses: [{{manager: gen-mgmt, address: {switch_ip(r)}}}]\n")
    if r >= racks:
        continue
    for u in range(1, 41):
        mac = "02:bb:00:%02x:%02x:%02x" % (r >> 8, r & 255, u)
        w(f"---\napiVersion: clusto.dev/v1alpha1\nkind: Server\nmetadata: {{name: gen-s{n:07d}}}\nspec:\n  rack: {rack}\n  ru: {u}\n  ports:\n    - {{port: \"nic-eth:1\", mac: \"{mac}\", osPort: eth0, connectedTo: \"{rack}-sw1:nic-eth:{u}\"}}\n  attrs:\n    owner: team-{n % 10}\n")
        n += 1
