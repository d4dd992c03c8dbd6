#!/usr/bin/env bash
# Proves what CI can of the Docker deployment without a Docker engine: the compose file is
# valid, and the image's own build steps (docker/build-app.sh) produce a production-only app
# that starts, answers, uses memcached and shuts down cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "--- docker-compose config"
docker-compose -f docker/docker-compose.yml config -q

out="$(mktemp -d)/app"
echo "--- docker/build-app.sh $out"
docker/build-app.sh "$out"
if [ -d "$out/node_modules/.pnpm" ] && ls "$out/node_modules/.pnpm" | grep -qE '^(vitest|typescript|eslint|turbo)@'; then
  echo "dev dependencies leaked into the production output" >&2
  exit 1
fi

port=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
mport=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
memcached_args=(-p "$mport" -U 0 -l 127.0.0.1 -m 16)
[ "$(id -u)" = 0 ] && memcached_args+=(-u root)
memcached "${memcached_args[@]}" &
mpid=$!
trap 'kill $mpid 2>/dev/null || true' EXIT

echo "--- starting the built app with STORE_BACKEND=memcache on port $port"
(cd "$out" && NODE_ENV=production PORT="$port" HOST=127.0.0.1 STORE_BACKEND=memcache \
  MEMCACHE_CONNECTION_STRING="127.0.0.1:$mport" LOG_LEVEL=info node dist/main.js) > "$out/server.log" 2>&1 &
apid=$!
for _ in $(seq 50); do
  if node -e "fetch('http://127.0.0.1:$port/healthz').then(()=>process.exit(0),()=>process.exit(1))" 2>/dev/null; then break; fi
  sleep 0.1
done
body=$(node -e "fetch('http://127.0.0.1:$port/').then(r=>r.text()).then(t=>console.log(t))")
health=$(node -e "fetch('http://127.0.0.1:$port/healthz').then(r=>r.text()).then(t=>console.log(t))")
echo "GET / -> $body"
echo "GET /healthz -> $health"
kill -TERM $apid
status=0
wait $apid || status=$?
cat "$out/server.log"
[ "$body" = "Hello, world!" ] || { echo "unexpected body" >&2; exit 1; }
echo "$health" | grep -q '"backend":"memcache","state":"up"' || { echo "memcached not in use" >&2; exit 1; }
[ "$status" = 0 ] || { echo "the app exited with $status on SIGTERM" >&2; exit 1; }
echo "image build steps: OK"
