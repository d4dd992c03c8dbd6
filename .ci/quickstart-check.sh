#!/usr/bin/env bash
# CI: the README's two quick-start lines, as written, on a fresh clone of this repository, with
# no pnpm and no corepack on PATH and an empty global npm prefix (as on a fresh machine with
# only Node). The server line runs until the app answers 200 on its port, then its whole
# session is stopped; the test line runs to the end. Exits non-zero on any failure.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

# The first ```sh block after each marker comment.
quickstart_line() {
  awk -v mark="<!-- quickstart:$1 -->" '
    $0 == mark { found = 1; next }
    found && /^```sh$/ { inside = 1; next }
    inside && /^```$/ { exit }
    inside { print }
  ' "$repo/README.md"
}
server_line="$(quickstart_line server)"
test_line="$(quickstart_line test)"
for name in server_line test_line; do
  if [ -z "${!name}" ] || [ "$(printf '%s\n' "${!name}" | wc -l)" -ne 1 ]; then
    echo "quickstart-check: README.md has no single ${name/_/ } after <!-- quickstart:${name%_line} -->" >&2
    exit 1
  fi
done

work="$(mktemp -d)"
server_session=""
stop_server() {
  if [ -n "$server_session" ]; then
    # Everything the server line started is in its session: turbo gives its tasks process
    # groups of their own, so the group alone is not enough.
    kill -TERM -- "-$server_session" 2>/dev/null || true
    for _ in $(seq 100); do
      pgrep -s "$server_session" >/dev/null || break
      sleep 0.1
    done
    pkill -KILL -s "$server_session" 2>/dev/null || true
    server_session=""
  fi
}
cleanup() {
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT

echo "--- fresh clone of $repo"
git clone --quiet "$repo" "$work/slidelimit"

# PATH without pnpm, pnpx, corepack or yarn; npm's global prefix empty, so npx cannot find a
# pnpm installed there either.
mkdir -p "$work/bin" "$work/npm-global"
IFS=: read -ra path_dirs <<<"$PATH"
for dir in "${path_dirs[@]}"; do
  [ -d "$dir" ] || continue
  for tool in "$dir"/*; do
    name="$(basename "$tool")"
    case "$name" in pnpm | pnpx | corepack | yarn | yarnpkg) continue ;; esac
    if [ -x "$tool" ] && [ ! -e "$work/bin/$name" ]; then
      ln -s "$tool" "$work/bin/$name"
    fi
  done
done
export PATH="$work/bin"
export NPM_CONFIG_PREFIX="$work/npm-global"
if command -v pnpm >/dev/null 2>&1; then
  echo "quickstart-check: pnpm is still on PATH" >&2
  exit 1
fi

port="$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close() })')"
cd "$work/slidelimit"

echo "--- server line (PORT=$port): $server_line"
# setsid: the line and everything it starts form one session, stopped as one.
PORT="$port" setsid bash -c "$server_line" >"$work/server.log" 2>&1 &
server_session=$!
deadline=$((SECONDS + 600))
until node -e 'fetch(process.argv[1]).then((r) => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1))' "http://127.0.0.1:$port/"; do
  if ! kill -0 "$server_session" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
    echo "quickstart-check: the server line did not answer 200 on port $port:" >&2
    tail -50 "$work/server.log" >&2
    exit 1
  fi
  sleep 1
done
echo "answered 200 on port $port after ${SECONDS}s"
stop_server
if node -e 'fetch(process.argv[1]).then(() => process.exit(0), () => process.exit(1))' "http://127.0.0.1:$port/"; then
  echo "quickstart-check: the server still answers after it was stopped" >&2
  exit 1
fi

echo "--- test line: $test_line"
bash -c "$test_line"
echo "--- quick start lines pass"
