#!/usr/bin/env bash
# Builds a small inventory on the default store and shows it. Safe to re-run:
# everything it creates is removed first.
set -euo pipefail
c() { echo "\$ clusto $*"; clusto "$@"; }
clusto delete s0000 s0001 s1 sw1 r1 dc1 net1 servernames web 2>/dev/null || true
c create datacenter dc1
c create rack r1 --in dc1
c create switch sw1 --in r1 --ru 45
c create server s1 --in r1 --ru 10
c connect s1:nic-eth:1 sw1:nic-eth:10
c create ipmanager net1 --set cidr=10.0.0.0/24 --set gateway=10.0.0.1
c ip allocate net1 s1 --osport eth0 --port nic-eth:1
c create namemanager servernames --set basename=s --set digits=4
c name allocate servernames --kind server
c create pool web
c insert web s1
c attr set dc1 dhcp.enabled true
c attr get s1 --merged
c locate s1
c query 'kind:server and in:dc1'
c get all
