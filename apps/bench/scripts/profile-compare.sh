#!/bin/bash
# Profile shares of one bench server built in a tree, for before/after checks of a change:
#   apps/bench/scripts/profile-compare.sh TREE KIND [CLIENTS] [LIMIT]
# e.g. run it for a worktree of the old commit and for this one, alternating, a few times each:
#   for i in 1 2 3; do for T in /tmp/before "$PWD"; do
#     apps/bench/scripts/profile-compare.sh $T slidelimit-memory-middleware 10000; done; done
# Prints req/s and the shares of busy CPU time in slidelimit's code, the response head and GC
# (src/profile.ts). Needs: pnpm build in TREE, wrk, taskset; memcached on 127.0.0.1:11211 for
# the memcache servers.
set -euo pipefail
T=$(realpath "$1") K=$2 C=${3:-1} L=${4:-1000000000}
here=$(cd "$(dirname "$0")/.." && pwd)
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
if [ "$C" -le 1 ]; then
  echo 'wrk.headers["x-client"] = "hot-client"' > "$d/load.lua"
else
  printf 'local n = 0\nrequest = function()\n  n = (n + 1) %% %d\n  return wrk.format("GET", nil, { ["x-client"] = "client-" .. n })\nend\n' "$C" > "$d/load.lua"
fi
P=/
case $K in *-api) P=/api/hello ;; esac
PORT=${PORT:-7020}
BENCH_SERVER=$K BENCH_LIMIT=$L BENCH_MEMCACHED=127.0.0.1:11211 PORT=$PORT taskset -c 0 \
  node --cpu-prof --cpu-prof-dir="$d" --cpu-prof-interval=100 "$T/apps/bench/dist/server.js" > "$d/server.log" 2>&1 &
pid=$!
# Wait until it answers (the profile covers start-up too; the warm-up load below dilutes it).
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$PORT$P" && break
  kill -0 $pid 2> /dev/null || { echo "the server exited:" >&2; cat "$d/server.log" >&2; exit 1; }
  sleep 0.1
done
taskset -c 1 wrk -t1 -c64 -d1s -s "$d/load.lua" "http://127.0.0.1:$PORT$P" > /dev/null
rps=$(taskset -c 1 wrk -t1 -c64 -d4s -s "$d/load.lua" "http://127.0.0.1:$PORT$P" | awk '/Requests\/sec/{print $2}')
kill -TERM $pid
wait $pid 2> /dev/null || true
f=$(ls "$d"/*.cpuprofile)
node -e "
import('$here/dist/profile.js').then(({ profileShares }) => {
  const s = profileShares(JSON.parse(require('fs').readFileSync('$f', 'utf8')))
  const pc = (x) => (x * 100).toFixed(1) + '%'
  console.log('$(basename "$T") $K clients=$C limit=$L rps=$rps slidelimit', pc(s.slidelimit), 'head', pc(s.headers), 'gc', pc(s.gc))
})"
