#!/usr/bin/env bash
# Matrix Synapse as the peer of imsync (README, "Performance": references measured in the same
# run): installs matrix-synapse from PyPI into bench/peers/synapse/.venv (gitignored), writes a
# config (SQLite, 127.0.0.1 only, shared-secret registration, rate limits and presence off) in a
# temp dir, starts it, runs `imsync-bench peer-synapse` (imsync and Synapse with the same
# generator and the same workloads, side by side with the ratio), and stops it.
#
# Usage: bench/peers/synapse/run.sh [--scale F]      (extra arguments go to imsync-bench)
# Needs: python3 (3.9+), a release build: cargo build --release -p imsync -p imsync-bench
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
venv="$here/.venv"
bench="${IMSYNC_BENCH_BIN:-$root/target/release/imsync-bench}"

if [[ ! -x "$bench" || ! -x "$root/target/release/imsync" ]]; then
  echo "missing release binaries; run: cargo build --release -p imsync -p imsync-bench" >&2
  exit 1
fi

if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import synapse' 2>/dev/null; then
  echo "installing matrix-synapse into $venv (a few minutes the first time)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet matrix-synapse
fi
"$venv/bin/python" -c 'import synapse; print("Synapse", synapse.__version__)' >&2

work="$(mktemp -d -t synapse-bench-XXXXXX)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
secret="$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
"$venv/bin/python" "$here/gen_config.py" "$work" "$port" "$secret" >/dev/null
"$venv/bin/python" -m synapse.app.homeserver -c "$work/homeserver.yaml" --generate-keys >/dev/null

"$venv/bin/python" -m synapse.app.homeserver -c "$work/homeserver.yaml" >"$work/stdout.log" 2>&1 &
synapse_pid=$!
cleanup() {
  if kill -0 "$synapse_pid" 2>/dev/null; then
    kill -TERM "$synapse_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$synapse_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$synapse_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

url="http://127.0.0.1:$port"
for i in $(seq 1 300); do
  if python3 -c "import urllib.request,sys; urllib.request.urlopen('$url/health', timeout=1)" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$synapse_pid" 2>/dev/null; then
    echo "Synapse exited during start-up:" >&2
    tail -n 40 "$work/stdout.log" "$work/homeserver.log" >&2 || true
    exit 1
  fi
  [[ $i == 300 ]] && { echo "Synapse did not answer /health within 60 s" >&2; exit 1; }
  sleep 0.2
done
echo "Synapse is up on $url (data in $work)" >&2

synapse_rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$synapse_pid/status" 2>/dev/null || echo 0; }
echo "Synapse RSS idle: $(( $(synapse_rss_kib) / 1024 )) MiB" >&2

"$bench" peer-synapse --synapse-url "$url" --synapse-secret "$secret" "$@"

echo "Synapse RSS after the run: $(( $(synapse_rss_kib) / 1024 )) MiB" >&2
