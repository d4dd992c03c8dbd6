#!/usr/bin/env bash
# The image's build steps, in two phases so the Dockerfile can cache the first in its own layer:
#
#   docker/build-app.sh fetch        fills pnpm's store from pnpm-lock.yaml alone (`pnpm fetch`);
#                                    needs no package.json, so sources changes do not redo it
#   docker/build-app.sh build OUT    installs offline from that store, builds the hello app and
#                                    writes a production-only copy of it (its dist/ and its
#                                    production dependencies, no dev tools) to OUT, ready for
#                                    `node dist/main.js`
#
# The Dockerfile runs both; so does CI (.ci/image-check.sh), which has no Docker engine, to prove
# them. The build phase never reaches the registry: a package missing from the lockfile fails it.
set -euo pipefail
cd "$(dirname "$0")/.."
export TURBO_TELEMETRY_DISABLED=1

case "${1:-}" in
  fetch)
    pnpm fetch
    ;;
  build)
    out="${2:?usage: docker/build-app.sh build OUTPUT_DIR}"
    pnpm install --offline --frozen-lockfile
    pnpm exec turbo run build --filter=@slidelimit/hello...
    rm -rf "$out"
    pnpm deploy --offline --filter=@slidelimit/hello --prod "$out"
    rm -f "$out/pnpm-lock.yaml" "$out/pnpm-workspace.yaml"
    ;;
  *)
    echo "usage: docker/build-app.sh fetch | docker/build-app.sh build OUTPUT_DIR" >&2
    exit 2
    ;;
esac
