#!/usr/bin/env bash
# Real-browser test of the web UI: starts the daemon on the simulator frontend
# with a fresh data dir, a free port and a random admin token, waits for the
# API, runs ui.test.mjs in Debian's chromium, and always stops the daemon.
#
#   tests/browser/run.sh           # against the daemon ($WASMTAP_BIN)
#   tests/browser/run.sh --mock    # against tests/browser/mock-server.mjs (UI work only)
#
# Environment: WASMTAP_BIN (default target/debug/wasmtap), RAM_WASM (default
# target/wasm-guests/wasm32-wasip2/release/wasmtap_guest_ram.wasm), ARTIFACTS_DIR
# (default target/artifacts/browser), CHROMIUM (default /usr/bin/chromium).
# Installs nothing but `npm ci` when node_modules is missing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

mock=0
[[ "${1:-}" == "--mock" ]] && mock=1

WASMTAP_BIN=${WASMTAP_BIN:-target/debug/wasmtap}
RAM_WASM=${RAM_WASM:-target/wasm-guests/wasm32-wasip2/release/wasmtap_guest_ram.wasm}
ARTIFACTS_DIR=${ARTIFACTS_DIR:-target/artifacts/browser}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

die() { echo "browser test: $*" >&2; exit 1; }

command -v node >/dev/null || die "node is not installed (apt-get install nodejs npm)"
[[ -x "$CHROMIUM" ]] || die "$CHROMIUM is missing (apt-get install chromium)"
[[ -f "$RAM_WASM" ]] || die "RAM_WASM=$RAM_WASM does not exist (build the example guests first)"
if [[ $mock == 0 ]]; then
  [[ -x "$WASMTAP_BIN" ]] || die "WASMTAP_BIN=$WASMTAP_BIN is not an executable (cargo build -p wasmtap)"
fi

if [[ ! -d "$here/node_modules/playwright-core" ]]; then
  echo "browser test: npm ci (playwright-core from package-lock.json)"
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

mkdir -p "$ARTIFACTS_DIR"
ARTIFACTS_DIR=$(cd "$ARTIFACTS_DIR" && pwd)
rm -f "$ARTIFACTS_DIR"/*.png

port=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
token="wt_$(node -e 'console.log(require("crypto").randomBytes(20).toString("hex"))')"
data_dir=$(mktemp -d /tmp/wasmtap-browser.XXXXXX)
log="$ARTIFACTS_DIR/daemon.log"

if [[ $mock == 1 ]]; then
  log="$ARTIFACTS_DIR/mock.log"
  node "$here/mock-server.mjs" --port "$port" --admin-token "$token" >"$log" 2>&1 &
else
  echo "browser test: $WASMTAP_BIN serve --frontend sim --data-dir $data_dir --listen 127.0.0.1:$port"
  # The token goes in the environment, not on the command line (ps).
  WASMTAP_ADMIN_TOKEN="$token" NO_COLOR=1 "$WASMTAP_BIN" serve --frontend sim --data-dir "$data_dir" \
    --listen "127.0.0.1:$port" >"$log" 2>&1 &
fi
pid=$!

cleanup() {
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  rm -rf "$data_dir"
  echo "browser test: server log: $log"
}
trap cleanup EXIT

base="http://127.0.0.1:$port/"
echo "browser test: waiting for $base api/v1/whoami"
if ! node - "$base" "$token" "$pid" <<'EOF'
const [base, token, pid] = process.argv.slice(2);
const end = Date.now() + 120_000;
const alive = () => { try { process.kill(Number(pid), 0); return true; } catch { return false; } };
for (;;) {
  try {
    const r = await fetch(`${base}api/v1/whoami`, { headers: { Authorization: `Bearer ${token}` } });
    if (r.ok) { console.log(`browser test: daemon up: ${await r.text()}`); process.exit(0); }
    if (r.status !== 503) { console.error(`browser test: whoami answered ${r.status}: ${await r.text()}`); process.exit(1); }
  } catch { /* not listening yet */ }
  if (!alive()) { console.error('browser test: the server exited before answering'); process.exit(1); }
  if (Date.now() > end) { console.error('browser test: no answer from whoami within 120 s'); process.exit(1); }
  await new Promise((r) => setTimeout(r, 250));
}
EOF
then
  echo "--- last lines of $log" >&2
  tail -n 40 "$log" >&2 || true
  exit 1
fi

status=0
BASE_URL="$base" ADMIN_TOKEN="$token" RAM_WASM="$RAM_WASM" ARTIFACTS_DIR="$ARTIFACTS_DIR" CHROMIUM="$CHROMIUM" \
  node "$here/ui.test.mjs" || status=$?
if [[ $status != 0 ]]; then
  echo "--- last lines of $log" >&2
  tail -n 40 "$log" >&2 || true
fi
exit $status
