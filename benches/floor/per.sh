#!/bin/sh
# usage: per.sh BINARY LABEL [EXTRA_ARG...]
#   -> instructions per request: (instr(4000 requests) - instr(1000 requests)) / 3000.
# Each run is in a fresh network namespace (loopback only). Profiles: $OUT/cg-LABEL-N.out
# (OUT defaults to /tmp/floor). EXTRA_ARGs go to the binary (the floor's --timer, --upgrades, --legacy).
bin=$1; label=$2; shift 2
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-/tmp/floor}; mkdir -p "$out"
for n in 1000 4000; do
  timeout 900 unshare -n sh -c "ip link set lo up && python3 '$here/cg.py' '$bin' $n '$out/cg-$label-$n.out' $*" >"$out/cg-$label-$n.log" 2>&1 \
    || { echo "$label N=$n failed:"; cat "$out/cg-$label-$n.log"; }
done
a=$(callgrind_annotate "$out/cg-$label-1000.out" 2>/dev/null | grep "PROGRAM TOTALS" | awk '{gsub(",","",$1); print $1}')
b=$(callgrind_annotate "$out/cg-$label-4000.out" 2>/dev/null | grep "PROGRAM TOTALS" | awk '{gsub(",","",$1); print $1}')
echo "$label: $(( (b - a) / 3000 )) instructions per request ($a, $b)"
