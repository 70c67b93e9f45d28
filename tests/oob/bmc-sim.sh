#!/bin/sh
# Starts OpenIPMI's ipmi_sim as one BMC on ADDR:PORT (ADDR 127.0.0.1), its chassis
# power kept in DIR/power (0 or 1) by chassis.sh. Users: admin/secret
# (admin), oper/operpw (operator). exec: the caller's PID is ipmi_sim's.
# With SOL-PORT, its serial-over-LAN console is the TCP service at
# 127.0.0.1:SOL-PORT (ipmi_sim connects to it).
# Usage: bmc-sim.sh DIR PORT [INITIAL-POWER [ADDR [SOL-PORT]]]
set -eu
dir=$1 port=$2 addr=${4:-127.0.0.1} sol=${5:-}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$dir/state"
echo "${3:-0}" > "$dir/power"
cat > "$dir/lan.conf" <<CONF
name "bmc$port"
set_working_mc 0x20
  startlan 1
    addr $addr $port
    priv_limit admin
    allowed_auths_callback md5 straight
    allowed_auths_user md5 straight
    allowed_auths_operator md5 straight
    allowed_auths_admin md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "$here/chassis.sh $dir/power"
$( [ -z "$sol" ] || echo "  sol \"tcp:127.0.0.1:$sol\" 115200" )
  user 2 true "admin" "secret" admin 10 md5 straight
  user 3 true "oper" "operpw" operator 10 md5 straight
CONF
cat > "$dir/bmc.emu" <<EMU
mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
mc_enable 0x20
EMU
exec ipmi_sim -c "$dir/lan.conf" -f "$dir/bmc.emu" -s "$dir/state" -n
