#!/bin/sh
# ipmi_sim's chassis_control program: "FILE get power" prints power:0|1,
# "FILE set power 0|1" records it. FILE is the simulated chassis.
f=$1
case "$2 $3" in
  "get power") echo "power:$(cat "$f")" ;;
  "set power") echo "$4" > "$f" ;;
esac
