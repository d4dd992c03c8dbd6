#!/usr/bin/env bash
# Builds the hello app and writes a production-only copy of it (its dist/ and its production
# dependencies, no dev tools, no sources) to the folder given, ready for `node dist/main.js`.
# The Dockerfile runs this script; so does CI, which has no Docker engine, to prove the image's
# build steps.
set -euo pipefail
out="${1:?usage: docker/build-app.sh OUTPUT_DIR}"
cd "$(dirname "$0")/.."
export TURBO_TELEMETRY_DISABLED=1
pnpm install --frozen-lockfile
pnpm exec turbo run build --filter=@slidelimit/hello...
rm -rf "$out"
pnpm deploy --filter=@slidelimit/hello --prod "$out"
rm -f "$out/pnpm-lock.yaml" "$out/pnpm-workspace.yaml"
