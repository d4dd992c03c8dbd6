#!/bin/bash
# Nanoseconds per limiter.decide() with the memory store, in a tight loop, for two built trees,
# each in its own process, alternating (the order reversed every other round); prints the
# median of each. For before/after checks of core and store-memory changes:
#   apps/bench/scripts/decide-ab.sh OLD_TREE NEW_TREE [CLIENTS] [ROUNDS]
set -euo pipefail
A=$(realpath "$1") B=$(realpath "$2") C=${3:-10000} R=${4:-10}
script=$(mktemp --suffix .mjs)
trap 'rm -f "$script"' EXIT
cat > "$script" <<'JS'
const [tree, clients] = [process.argv[2], Number(process.argv[3])]
const { createLimiter } = await import(`${tree}/packages/core/dist/index.js`)
const { MemoryStore } = await import(`${tree}/packages/store-memory/dist/index.js`)
let t = 1_700_000_000_000
const limiter = createLimiter({ store: new MemoryStore({ now: () => t }), now: () => t, limit: 1e9 })
const ids = Array.from({ length: clients }, (_, i) => `client-${i}`)
const run = (n) => { for (let i = 0; i < n; i++) { t += 0.2; limiter.decide(ids[i % clients]) } }
run(2_000_000)
const start = process.hrtime.bigint()
run(5_000_000)
console.log((Number(process.hrtime.bigint() - start) / 5_000_000).toFixed(0))
JS
a=() b=()
for r in $(seq "$R"); do
  if [ $((r % 2)) = 1 ]; then
    a+=("$(taskset -c 0 node "$script" "$A" "$C")"); b+=("$(taskset -c 0 node "$script" "$B" "$C")")
  else
    b+=("$(taskset -c 0 node "$script" "$B" "$C")"); a+=("$(taskset -c 0 node "$script" "$A" "$C")")
  fi
done
median() {
  printf '%s\n' "$@" | sort -n |
    awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
echo "clients $C, $R rounds: $(basename "$A") $(median "${a[@]}") ns, $(basename "$B") $(median "${b[@]}") ns per decision (median)"
