#!/bin/bash
# Paired A/B of two bench servers (apps/bench/src/servers.ts): both pinned to core 0, wrk to
# core 1, alternating order round by round. Prints the median and interquartile range of the
# throughput ratio A/B.
#
#   apps/bench/scripts/server-ab.sh A B [ROUNDS=12]
#   D=seconds per round (2)  CLIENTS=distinct x-client values (1)  LIMIT=per hour (1e9)
# Needs: pnpm build, wrk, taskset (Linux); memcached on 127.0.0.1:11211 for the memcache servers.
set -euo pipefail
cd "$(dirname "$0")/../../.."
A=$1 B=$2 R=${3:-12} D=${D:-2} CLIENTS=${CLIENTS:-1} LIMIT=${LIMIT:-1000000000}
out=$(mktemp -d)
path() { case $1 in *-api) echo /api/hello ;; *) echo / ;; esac; }
if [ "$CLIENTS" -le 1 ]; then
  echo 'wrk.headers["x-client"] = "hot-client"' > "$out/load.lua"
else
  printf 'local n = 0\nrequest = function()\n  n = (n + 1) %% %d\n  return wrk.format("GET", nil, { ["x-client"] = "client-" .. n })\nend\n' "$CLIENTS" > "$out/load.lua"
fi
start() {
  BENCH_SERVER=$1 BENCH_LIMIT=$LIMIT PORT=$2 taskset -c 0 node ${NODE_FLAGS:-} apps/bench/dist/server.js > /dev/null &
  echo $!
}
PA=$(start "$A" 7101)
PB=$(start "$B" 7102)
trap 'kill $PA $PB 2>/dev/null; rm -rf "$out"' EXIT
sleep 1.5
UA="http://127.0.0.1:7101$(path "$A")"
UB="http://127.0.0.1:7102$(path "$B")"
for u in "$UA" "$UB"; do taskset -c 1 wrk -t1 -c64 -d1s -s "$out/load.lua" "$u" > /dev/null; done
: > "$out/ab.txt"
rps() { taskset -c 1 wrk -t1 -c64 -d"${D}s" -s "$out/load.lua" "$1" | awk '/Requests\/sec/{print $2}'; }
for i in $(seq 1 "$R"); do
  if ((i % 2)); then a=$(rps "$UA"); b=$(rps "$UB"); else b=$(rps "$UB"); a=$(rps "$UA"); fi
  printf "%.4f %s %s\n" "$(echo "$a/$b" | bc -l)" "$a" "$b" >> "$out/ab.txt"
done
med() { sort -n | awk '{a[NR]=$1} END{m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; q1=a[int((NR+3)/4)]; q3=a[int((3*NR+1)/4)]; printf "median %.3f IQR %.3f-%.3f", m, q1, q3}'; }
echo "$A / $B (clients $CLIENTS, limit $LIMIT): $(cut -d' ' -f1 "$out/ab.txt" | med); rps $A $(cut -d' ' -f2 "$out/ab.txt" | med | cut -d' ' -f2), $B $(cut -d' ' -f3 "$out/ab.txt" | med | cut -d' ' -f2)"
