#!/usr/bin/env bash
# Proves what CI can of the Docker deployment without a Docker engine: both compose files are
# valid, and the image's own build steps (docker/build-app.sh fetch, then build) produce a
# production-only app that, on the image's Node major (the `node` registry package ships the
# binaries), starts, answers, uses memcached and shuts down cleanly. The libraries' test suites
# run on that Node too. What it cannot prove: the image itself (its base layers, the non-root
# user, HEALTHCHECK timing) and compose's networking (depends_on, nginx in front of replicas).
set -euo pipefail
cd "$(dirname "$0")/.."
export TURBO_TELEMETRY_DISABLED=1

echo "--- docker-compose config"
for file in docker/docker-compose.yml docker/docker-compose.pool.yml; do
  docker-compose -f "$file" config -q
  echo "$file: OK"
done

# The Node major of the image, read from the Dockerfile so the two cannot drift apart.
majors=$(sed -nE 's/^FROM node:([0-9]+)-.*/\1/p' docker/Dockerfile | sort -u)
[ "$(echo "$majors" | wc -l)" = 1 ] || { echo "the Dockerfile's stages differ in Node: $majors" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "--- node@$majors from the registry"
npm install --prefix "$work/node" --no-save --no-audit --no-fund --loglevel=error "node@$majors" >/dev/null
node_image="$work/node/node_modules/.bin/node"
version="$("$node_image" --version)"
[[ "$version" == "v$majors."* ]] || { echo "node@$majors gave $version" >&2; exit 1; }
echo "image Node: $version (machine Node: $(node --version))"

# The Dockerfile's two build layers, as Docker runs them: pnpm's store and cache start empty
# (fresh XDG folders), `fetch` sees only the lockfile and the script, then `build` runs offline
# in a copy of the tree without what .dockerignore leaves out.
src="$work/src"
out="$work/app"
export XDG_DATA_HOME="$work/xdg/data" XDG_CACHE_HOME="$work/xdg/cache" XDG_STATE_HOME="$work/xdg/state"
mkdir -p "$src/docker"
cp pnpm-lock.yaml pnpm-workspace.yaml "$src/"
cp docker/build-app.sh "$src/docker/"
echo "--- docker/build-app.sh fetch (lockfile only, empty store)"
(cd "$src" && docker/build-app.sh fetch)
tar -c --exclude=node_modules --exclude=dist --exclude=.turbo --exclude='*.tsbuildinfo' \
  --exclude=.git . | tar -x -C "$src"
echo "--- docker/build-app.sh build $out (offline)"
(cd "$src" && docker/build-app.sh build "$out")
if [ -d "$out/node_modules/.pnpm" ] && ls "$out/node_modules/.pnpm" | grep -qE '^(vitest|typescript|eslint|turbo)@'; then
  echo "dev dependencies leaked into the production output" >&2
  exit 1
fi

echo "--- library test suites on Node $version (in the build's copy, built above)"
for name in core store-memory hono-middleware store-memcache; do
  echo "packages/$name:"
  (cd "$src/packages/$name" && "$node_image" ../../node_modules/vitest/vitest.mjs run --reporter=dot)
done

port=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
mport=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
memcached_args=(-p "$mport" -U 0 -l 127.0.0.1 -m 16)
[ "$(id -u)" = 0 ] && memcached_args+=(-u root)
memcached "${memcached_args[@]}" &
mpid=$!
trap 'kill $mpid 2>/dev/null || true; rm -rf "$work"' EXIT

echo "--- starting the built app on Node $version with STORE_BACKEND=memcache on port $port"
(cd "$out" && NODE_ENV=production PORT="$port" HOST=127.0.0.1 STORE_BACKEND=memcache \
  MEMCACHE_CONNECTION_STRING="127.0.0.1:$mport" LOG_LEVEL=info "$node_image" dist/main.js) > "$out/server.log" 2>&1 &
apid=$!
# The app too, if a check below fails before it is stopped.
trap 'kill $apid $mpid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 50); do
  if node -e "fetch('http://127.0.0.1:$port/healthz').then(()=>process.exit(0),()=>process.exit(1))" 2>/dev/null; then break; fi
  sleep 0.1
done
body=$(node -e "fetch('http://127.0.0.1:$port/').then(r=>r.text()).then(t=>console.log(t))")
health=$(node -e "fetch('http://127.0.0.1:$port/healthz').then(r=>r.text()).then(t=>console.log(t))")
# The Dockerfile's HEALTHCHECK command, run as the image runs it (same Node, PORT from the env).
healthcheck=$(sed -nE 's/^ *CMD \["node", "-e", "(.*)"\]$/\1/p' docker/Dockerfile | sed 's/\\"/"/g')
[ -n "$healthcheck" ] || { echo "no HEALTHCHECK command found in docker/Dockerfile" >&2; exit 1; }
hc_status=0
PORT="$port" "$node_image" -e "$healthcheck" || hc_status=$?
echo "GET / -> $body"
echo "GET /healthz -> $health"
echo "HEALTHCHECK -> exit $hc_status"
kill -TERM $apid
status=0
wait $apid || status=$?
cat "$out/server.log"
[ "$body" = "Hello, world!" ] || { echo "unexpected body" >&2; exit 1; }
echo "$health" | grep -q '"backend":"memcache","state":"up"' || { echo "memcached not in use" >&2; exit 1; }
[ "$hc_status" = 0 ] || { echo "the HEALTHCHECK command failed" >&2; exit 1; }
[ "$status" = 0 ] || { echo "the app exited with $status on SIGTERM" >&2; exit 1; }
echo "image build steps on Node $version: OK"
