#!/usr/bin/env bash
# The real-kernel benchmark: one VM boot, wasmtap's backstores beside LIO's rd_mcp and fileio and
# Debian's tcmu-runner, the same fio workloads, interleaved rounds; prints a markdown table.
# Not a CI gate (it judges nothing); see tests/vm/README.md, "The real-kernel benchmark".
#
#   tests/vm/bench.sh [--secs N] [--rounds N] [--size-mb N] [--backends "..."] [--workloads "..."]
#                     [--many "1 8 32"] [--profile "native:r4k1 ram:r4k32"] [--log FILE]
#                     [--wasmtap BINARY]   (default: cargo build --release -p wasmtap)
#                     [--append "KEY=VALUE ..."]  (environment of the VM's init, the daemon's too)
#
# --profile runs, after the rounds, each backstore:workload once more under `perf record -a -g`
# and `strace -c` (apt-get install linux-perf strace on the host) and prints per-thread CPU.
#
# Needs root the first time (setup.sh and `apt-get install tcmu-runner`).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE="${WASMTAP_VM_CACHE:-$HOME/.cache/wasmtap-vm}"

EXTRA_APPEND=""
SECS=4 ROUNDS=2 SIZE_MB=128 BACKENDS="" WORKLOADS="" MANY="" PROFILE="" LOG="" WASMTAP=""
while (($#)); do
  case $1 in
    --secs) SECS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --size-mb) SIZE_MB=$2; shift 2 ;;
    --backends) BACKENDS=$2; shift 2 ;;
    --workloads) WORKLOADS=$2; shift 2 ;;
    --many) MANY=$2; shift 2 ;;
    --profile) PROFILE=$2; shift 2 ;;
    --log) LOG=$2; shift 2 ;;
    --wasmtap) WASMTAP=$2; shift 2 ;;
    --append) EXTRA_APPEND+=" $2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench: unknown argument $1" >&2; exit 2 ;;
  esac
done

if [[ $(id -u) -eq 0 ]]; then
  "$HERE/setup.sh" >/dev/null
  for p in tcmu-runner dbus-daemon; do
    command -v "$p" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends tcmu-runner dbus-daemon >/dev/null
  done
fi
for p in tcmu-runner dbus-daemon qemu-system-x86_64; do
  command -v "$p" >/dev/null || { echo "bench: $p missing: run as root once" >&2; exit 2; }
done

if [[ -z $WASMTAP ]]; then
  (cd "$REPO" && cargo build --release -p wasmtap)
  TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
  [[ $TARGET_DIR == /* ]] || TARGET_DIR=$REPO/$TARGET_DIR
  WASMTAP=$TARGET_DIR/release/wasmtap
fi

# tcmu-runner looks target_core_user up through libkmod, which reads the binary module indexes
# (busybox depmod in the VM writes only the text ones): bring setup.sh's.
# shellcheck disable=SC1091
. "$CACHE/vm.env"
MODIDX=()
for f in modules.dep.bin modules.alias.bin modules.symbols.bin modules.builtin.bin modules.builtin.alias.bin modules.softdep; do
  [[ -f $KERNEL_ROOT/lib/modules/$KVER/$f ]] && MODIDX+=(--add "$KERNEL_ROOT/lib/modules/$KVER/$f:/lib/modules/$KVER/$f")
done

# Only the qcow handler (the others pull in librbd/glusterfs).
HANDLERS=$(mktemp -d)
trap 'rm -rf "$HANDLERS"' EXIT
cp /usr/lib/x86_64-linux-gnu/tcmu-runner/handler_qcow.so "$HANDLERS/"

APPEND="B_SECS=$SECS B_ROUNDS=$ROUNDS B_SIZE_MB=$SIZE_MB$EXTRA_APPEND"
[[ -n $BACKENDS ]] && APPEND+=" B_BACKENDS=${BACKENDS// /,}"
[[ -n $WORKLOADS ]] && APPEND+=" B_WORKLOADS=${WORKLOADS// /,}"
[[ -n $MANY ]] && APPEND+=" B_MANY=${MANY// /,}"
# profiles: perf (Debian's linux-perf) and strace inside the VM
EXTRA=()
if [[ -n $PROFILE ]]; then
  APPEND+=" B_PROFILE=${PROFILE// /,}"
  for p in perf strace; do command -v $p >/dev/null && EXTRA+=(--bin "$p"); done
fi
# the VM's budget: prefill + rounds (6 backstores x 8 workloads) + many-device phase + slack
TIMEOUT=$(( 300 + ROUNDS * 60 * (SECS + 3) + (${#MANY} > 0 ? 600 : 0) ))
LOG=${LOG:-${WASMTAP_VM_LOG_DIR:-$REPO/target/vm-logs}/bench-kernel-$(date +%Y%m%d-%H%M%S).log}

"$HERE/run.sh" --check "$HERE/checks/bench-kernel.sh" --mem 2048 --timeout "$TIMEOUT" --log "$LOG" \
  --append "$APPEND" \
  --add "$WASMTAP:/usr/bin/wasmtap" \
  --bin tcmu-runner --bin dbus-daemon \
  --add "$HANDLERS:/usr/lib/x86_64-linux-gnu/tcmu-runner" \
  --add /etc/tcmu/tcmu.conf:/etc/tcmu/tcmu.conf \
  --add /usr/share/dbus-1:/usr/share/dbus-1 --add /etc/dbus-1:/etc/dbus-1 "${EXTRA[@]}" "${MODIDX[@]}" || true

python3 "$HERE/bench-table.py" "$LOG"
