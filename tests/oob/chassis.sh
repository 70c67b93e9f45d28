#!/bin/sh
# ipmi_sim's chassis_control program: "FILE get power" prints power:0|1,
# "FILE set power 0|1" records it. FILE is the simulated chassis; every
# call is appended to FILE.ops ("get" or "set N") for counting.
f=$1
case "$2 $3" in
  "get power") echo get >> "$f.ops"; echo "power:$(cat "$f")" ;;
  "set power") echo "set $4" >> "$f.ops"; echo "$4" > "$f" ;;
esac
