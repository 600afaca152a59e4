#!/usr/bin/env bash
# CI entry point of the real-kernel VM tests (called by .ci/run): install/cache what the VM
# needs, then boot one VM per suite below, one after the other. Exits non-zero if any suite fails.
#
# Env: WASMTAP_VM_CACHE (default $HOME/.cache/wasmtap-vm), WASMTAP_VM_TIMEOUT (per VM, default 300),
#      WASMTAP_VM_LOG_DIR (default target/vm-logs). Outside CI (CI != true) and without root, the
#      run is skipped with a message when the VM tools are not installed yet.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE="${WASMTAP_VM_CACHE:-$HOME/.cache/wasmtap-vm}"
TIMEOUT=${WASMTAP_VM_TIMEOUT:-300}

t0=$(date +%s)
if [[ $(id -u) -eq 0 ]]; then
  "$HERE/setup.sh" >/dev/null
elif [[ ${CI:-} == true ]]; then
  echo "vm-ci: error: setup needs root (apt-get install); CI runs as root" >&2
  exit 1
elif ! command -v qemu-system-x86_64 >/dev/null || [[ ! -f $CACHE/vm.env ]]; then
  echo "vm-ci: SKIP: qemu or the VM cache is missing and setup needs root: run 'sudo tests/vm/setup.sh'" >&2
  exit 0
fi
t1=$(date +%s)

status=0
run() { # run NAME ARGS...: one VM
  local name=$1; shift
  echo "vm-ci: === $name ==="
  if ! "$HERE/run.sh" --timeout "$TIMEOUT" "$@"; then
    echo "vm-ci: $name FAILED"
    status=1
  fi
}

# Suites, one VM each.
run kernel-smoke --check "$HERE/checks/kernel-smoke.sh"

# The daemon end-to-end suite: the release daemon (glibc; the builder copies its libraries).
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
[[ $TARGET_DIR == /* ]] || TARGET_DIR=$REPO/$TARGET_DIR   # cargo runs in $REPO
tb=$(date +%s)
if (cd "$REPO" && cargo build --release -p wasmtap); then
  echo "vm-ci: cargo build --release -p wasmtap: $(( $(date +%s) - tb ))s"
  run daemon-e2e --check "$HERE/checks/daemon-e2e.sh" --add "$TARGET_DIR/release/wasmtap:/usr/bin/wasmtap"
  # WebAssembly backstores (ram, raw-file), netlink events and resize, targetcli-style devices.
  run daemon-guests --check "$HERE/checks/daemon-guests.sh" --add "$TARGET_DIR/release/wasmtap:/usr/bin/wasmtap"
  # What strict initiators check, on targetcli-style LUNs (default hw_max_sectors) of every backstore.
  run scsi-strict --check "$HERE/checks/scsi-strict.sh" --add "$TARGET_DIR/release/wasmtap:/usr/bin/wasmtap"
  # The control plane (API through the CLI): tenant, device, export as a LUN, hot swap, restart.
  run control-plane --check "$HERE/checks/control-plane.sh" --add "$TARGET_DIR/release/wasmtap:/usr/bin/wasmtap" \
    --add "$TARGET_DIR/wasm-guests/wasm32-wasip2/release/wasmtap_guest_raw_file.wasm:/test/raw-file.wasm"
else
  echo "vm-ci: daemon-e2e, daemon-guests, scsi-strict and control-plane FAILED: cargo build --release -p wasmtap failed"
  status=1
fi

t2=$(date +%s)
echo "vm-ci: setup $((t1 - t0))s, VMs $((t2 - t1))s, total $((t2 - t0))s"
exit "$status"
