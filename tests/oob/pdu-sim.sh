#!/bin/sh
# Starts net-snmp's snmpd as one PowerTower XM PDU on 127.0.0.1:PORT with
# read-write community COMMUNITY; outlet states in DIR (see outlets.py).
# ADDR defaults to 127.0.0.1.
# exec: the caller's PID is snmpd's.
# Usage: pdu-sim.sh DIR PORT COMMUNITY [ADDR]
set -eu
dir=$1 port=$2 community=$3 addr=${4:-127.0.0.1}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$dir"
cat > "$dir/snmpd.conf" <<CONF
agentAddress udp:$addr:$port
rwcommunity $community 127.0.0.0/8
pass_persist .1.3.6.1.4.1.1718.3.2.3.1 /usr/bin/python3 $here/outlets.py $dir
pass_persist .1.3.6.1.4.1.318.1.1.4.4.2.1.3 /usr/bin/python3 $here/outlets.py $dir
CONF
exec snmpd -f -Lf "$dir/snmpd.log" -C -c "$dir/snmpd.conf" -p "$dir/snmpd.pid" -I -ifTable,ifXTable
