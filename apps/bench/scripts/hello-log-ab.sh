#!/bin/bash
# Paired A/B of the built hello app with its access log on (LOG_LEVEL=info) and off
# (LOG_LEVEL=warn): both servers pinned to core 0, wrk to core 1, alternating order round by
# round. Prints the median and interquartile range of the throughput ratio and of the CPU time
# per request (utime+stime from /proc), a measure neighbours move less.
#
#   apps/bench/scripts/hello-log-ab.sh [ROUNDS=16]      D=seconds per round (2)
#   STDOUT=pipe to write the logs to a pipe instead of a file
# Needs: pnpm build, wrk, taskset (Linux).
set -euo pipefail
cd "$(dirname "$0")/../../.."
R=${1:-16}
D=${D:-2}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
start() {
  if [ "${STDOUT:-file}" = pipe ]; then
    PORT=$1 HOST=127.0.0.1 RATE_LIMIT=1000000000 LOG_LEVEL=$2 taskset -c 0 node apps/hello/dist/main.js > >(cat > /dev/null) 2>&1 &
  else
    PORT=$1 HOST=127.0.0.1 RATE_LIMIT=1000000000 LOG_LEVEL=$2 taskset -c 0 node apps/hello/dist/main.js > "$out/$2.log" 2>&1 &
  fi
  echo $!
}
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
PI=$(start 7001 info)
PW=$(start 7002 warn)
trap 'kill $PI $PW 2>/dev/null; rm -rf "$out"' EXIT
sleep 1.5
for p in 7001 7002; do taskset -c 1 wrk -t1 -c64 -d1s "http://127.0.0.1:$p/" > /dev/null; done
declare -A PID=([7001]=$PI [7002]=$PW)
: > "$out/ab.txt"
for i in $(seq 1 "$R"); do
  if ((i % 2)); then order="7001 7002"; else order="7002 7001"; fi
  for p in $order; do
    c0=$(cpu "${PID[$p]}")
    result=$(taskset -c 1 wrk -t1 -c64 -d"${D}s" "http://127.0.0.1:$p/")
    c1=$(cpu "${PID[$p]}")
    rps=$(echo "$result" | awk '/Requests\/sec/{print $2}')
    n=$(echo "$result" | awk '/requests in/{print $1}')
    eval "r$p=$rps; u$p=$(echo "($c1-$c0)*10000/$n" | bc -l)"
  done
  printf "%.4f %.4f %.2f %.2f\n" "$(echo "$r7001/$r7002" | bc -l)" "$(echo "$u7002/$u7001" | bc -l)" "$u7001" "$u7002" >> "$out/ab.txt"
done
med() { sort -n | awk '{a[NR]=$1} END{m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; q1=a[int((NR+3)/4)]; q3=a[int((3*NR+1)/4)]; printf "median %.3f IQR %.3f-%.3f", m, q1, q3}'; }
echo "throughput, log on / log off: $(cut -d' ' -f1 "$out/ab.txt" | med)"
echo "CPU per request, log off / log on: $(cut -d' ' -f2 "$out/ab.txt" | med)"
echo "CPU µs per request: log on $(cut -d' ' -f3 "$out/ab.txt" | med), log off $(cut -d' ' -f4 "$out/ab.txt" | med)"
