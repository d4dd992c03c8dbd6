#!/usr/bin/env bash
# Packs each library package as `pnpm publish` would (its prepack builds it) and checks the
# tarball: publint (warnings count as errors, and so do its suggestions), Are the Types Wrong
# (`attw`, ESM-only profile: the packages are ESM and do not promise CommonJS), and what neither
# tool looks at: a LICENSE, no build info, no tests, and every source and declaration map
# pointing at a file inside the tarball. Exits non-zero on the first package with any problem.
set -euo pipefail
cd "$(dirname "$0")/.."
export TURBO_TELEMETRY_DISABLED=1

packages=(core store-memory store-memcache hono-middleware)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for name in "${packages[@]}"; do
  dir="packages/$name"
  dest="$work/$name"
  mkdir -p "$dest"
  echo "--- pnpm pack $dir"
  (cd "$dir" && pnpm pack --pack-destination "$dest" >"$dest/pack.log" 2>&1) ||
    { cat "$dest/pack.log" >&2; exit 1; }
  tarball="$(ls "$dest"/*.tgz)"
  echo "$(basename "$tarball"): $(tar tzf "$tarball" | wc -l) files, $(($(wc -c <"$tarball") / 1024)) KiB"

  echo "--- publint $name"
  publint_out="$(pnpm exec publint run --strict --level suggestion "$tarball" 2>&1)" ||
    { echo "$publint_out" >&2; exit 1; }
  echo "$publint_out"
  # publint exits 0 on suggestions; a clean run prints no numbered findings.
  if echo "$publint_out" | grep -qE '^[[:space:]]*[0-9]+\. '; then
    echo "publint has suggestions for $name" >&2
    exit 1
  fi

  echo "--- attw $name (esm-only)"
  pnpm exec attw --profile esm-only --format table --no-emoji --no-color "$tarball"

  echo "--- tarball contents $name"
  mkdir -p "$dest/x"
  tar xzf "$tarball" -C "$dest/x"
  node - "$dest/x/package" <<'EOF'
const fs = require('node:fs')
const path = require('node:path')
const root = process.argv[2]
const files = []
const walk = (dir) => {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name)
    if (entry.isDirectory()) walk(full)
    else files.push(path.relative(root, full))
  }
}
walk(root)
const problems = []
if (!files.includes('LICENSE')) problems.push('no LICENSE')
for (const file of files) {
  if (file.endsWith('.tsbuildinfo')) problems.push(`ships build info ${file}`)
  if (/\.test(-helpers)?\.ts$|\.capture\.ts$/.test(file)) problems.push(`ships test code ${file}`)
  if (!file.endsWith('.map')) continue
  const map = JSON.parse(fs.readFileSync(path.join(root, file), 'utf8'))
  const base = path.dirname(path.join(root, file))
  for (const source of map.sources) {
    const target = path.resolve(base, map.sourceRoot ?? '', source)
    if (!target.startsWith(root + path.sep) || !fs.existsSync(target)) {
      problems.push(`${file} points to ${source}, not in the package`)
    }
  }
}
if (problems.length > 0) {
  console.error(problems.join('\n'))
  process.exit(1)
}
const maps = files.filter((f) => f.endsWith('.map')).length
console.log(`LICENSE present; no build info or tests; ${maps} maps, every source inside the package`)
EOF
  if ! cmp -s LICENSE "$dest/x/package/LICENSE"; then
    echo "$dir/LICENSE differs from the root LICENSE" >&2
    exit 1
  fi
done
echo "pack check: ${#packages[@]} packages OK"
