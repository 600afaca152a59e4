#!/usr/bin/env bash
# Boot the Debian kernel under qemu (TCG) with a test initramfs and judge the result.
#
#   tests/vm/run.sh --check SCRIPT [--add SRC:DEST]... [--bin PROG]... [--modules "m1 m2"]
#                   [--timeout SECS] [--log FILE] [--append "KEY=VALUE ..."] [--mem MIB] [--verbose]
#
#   --check SCRIPT   the test script run inside the VM (see checks/kernel-smoke.sh). Required.
#   --add, --bin, --modules   passed to build-initramfs.sh (extra files, programs, modules).
#   --timeout SECS   host wall-clock limit for the VM (default $WASMTAP_VM_TIMEOUT or 600). The
#                    guest's own limit (VM_TEST_TIMEOUT) is set 30 s below it unless --append sets it.
#   --log FILE       serial console log (default $WASMTAP_VM_LOG_DIR/<check>-<time>.log, the dir
#                    defaulting to target/vm-logs; target/vm-logs/latest.log points at the last one)
#   --append STR     extra kernel command-line words; KEY=VALUE words without a dot become
#                    environment variables of /init and the test script.
#   --mem MIB        guest memory (default $WASMTAP_VM_MEM or 1024)
#   --verbose        echo the whole console, including the kernel log dumped after the test
#                    (by default that part is only in the log file).
#
# Exit status: 0 only if the console shows a final `vm-suite: N passed, 0 failed` with N > 0.
# Env: WASMTAP_VM_CACHE (setup.sh's cache), WASMTAP_VM_TIMEOUT, WASMTAP_VM_LOG_DIR, QEMU (binary).
# Only one VM runs at a time on a machine: runs wait on a lock in the cache dir.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE="${WASMTAP_VM_CACHE:-$HOME/.cache/wasmtap-vm}"
QEMU=${QEMU:-qemu-system-x86_64}

log() { printf 'vm: %s\n' "$*" >&2; }
die() { printf 'vm: error: %s\n' "$*" >&2; exit 2; }

CHECK=""
TIMEOUT=${WASMTAP_VM_TIMEOUT:-600}
LOG=""
APPEND_EXTRA=""
VERBOSE=0
MEM=${WASMTAP_VM_MEM:-1024}
BUILD_ARGS=()
while (($#)); do
  case $1 in
    --check) CHECK=${2:?--check needs a file}; shift 2 ;;
    --add|--bin|--modules) BUILD_ARGS+=("$1" "${2:?$1 needs a value}"); shift 2 ;;
    --timeout) TIMEOUT=${2:?--timeout needs seconds}; shift 2 ;;
    --log) LOG=${2:?--log needs a file}; shift 2 ;;
    --append) APPEND_EXTRA+=" ${2:?--append needs a string}"; shift 2 ;;
    --mem) MEM=${2:?--mem needs MiB}; shift 2 ;;
    --verbose|-v) VERBOSE=1; shift ;;
    -h|--help) sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[[ -n $CHECK ]] || die "--check SCRIPT is required"
[[ -f $CHECK ]] || die "check script not found: $CHECK"
[[ $TIMEOUT =~ ^[0-9]+$ && $TIMEOUT -ge 30 ]] || die "--timeout must be a number of seconds >= 30"
command -v "$QEMU" >/dev/null || die "$QEMU not found: run tests/vm/setup.sh (package qemu-system-x86)"
command -v timeout >/dev/null || die "timeout not found (coreutils)"
command -v flock >/dev/null || die "flock not found (util-linux)"
[[ -f $CACHE/vm.env ]] || die "$CACHE/vm.env missing: run tests/vm/setup.sh first"
# shellcheck disable=SC1091
. "$CACHE/vm.env"
[[ -f $VMLINUZ ]] || die "kernel image missing: $VMLINUZ (run tests/vm/setup.sh)"

name=$(basename "$CHECK"); name=${name%.sh}
LOG_DIR=${WASMTAP_VM_LOG_DIR:-$REPO/target/vm-logs}
if [[ -z $LOG ]]; then
  mkdir -p "$LOG_DIR"
  LOG="$LOG_DIR/$name-$(date +%Y%m%d-%H%M%S).log"
fi
mkdir -p "$(dirname "$LOG")"
LOG=$(cd "$(dirname "$LOG")" && pwd)/$(basename "$LOG")

# One VM at a time per machine (TCG eats CPU); wait for a running one to finish.
mkdir -p "$CACHE"
exec 9>"$CACHE/vm.lock"
if ! flock -n 9; then
  log "another VM run holds $CACHE/vm.lock; waiting"
  flock 9
fi

INITRD="$REPO/target/vm/initramfs-$name.cpio.gz"
t0=$(date +%s.%N)
"$HERE/build-initramfs.sh" --check "$CHECK" --output "$INITRD" "${BUILD_ARGS[@]}" >&2 \
  || die "building the initramfs failed"
t1=$(date +%s.%N)

GUEST_TIMEOUT=$((TIMEOUT - 30))
APPEND="console=ttyS0 panic=-1 quiet loglevel=4 VM_TEST_TIMEOUT=$GUEST_TIMEOUT$APPEND_EXTRA"

log "kernel $KVER, initramfs $(du -h "$INITRD" | cut -f1), timeout ${TIMEOUT}s"
log "serial log: $LOG"

filter() {
  if ((VERBOSE)); then cat; else
    awk '/^----- vm-init: dmesg -----/ { skip = 1; print "(kernel log omitted here; it is in the serial log)" }
         !skip { print; fflush() }
         /^----- vm-init: end of dmesg -----/ { skip = 0 }'
  fi
}

set +e
timeout --kill-after=10 "$TIMEOUT" "$QEMU" -accel tcg -cpu max -m "$MEM" -smp 2 -nographic -no-reboot \
  -kernel "$VMLINUZ" -initrd "$INITRD" -append "$APPEND" </dev/null 2>&1 \
  | sed -u -e 's/\r$//' -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1bc//g' | tee "$LOG" | filter
rc=${PIPESTATUS[0]}
set -e
t2=$(date +%s.%N)
ln -sfn "$(basename "$LOG")" "$(dirname "$LOG")/latest.log" 2>/dev/null || true

build_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
vm_s=$(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.1f", b - a }')
log "initramfs build ${build_s}s, VM ${vm_s}s wall"

summary=$(grep -E '^vm-suite: [0-9]+ passed, [0-9]+ failed$' "$LOG" | tail -n 1 || true)
status=0
if ((rc == 124 || rc == 137)); then
  log "FAILED: the VM did not finish within ${TIMEOUT}s and was killed"
  status=1
elif ((rc != 0)); then
  log "FAILED: $QEMU exited with status $rc"
  status=1
fi
if [[ -z $summary ]]; then
  log "FAILED: no 'vm-suite: N passed, M failed' line on the console"
  summary="vm-suite: 0 passed, 1 failed"
  status=1
elif [[ ! $summary =~ ^vm-suite:\ ([0-9]+)\ passed,\ 0\ failed$ ]] || ((BASH_REMATCH[1] == 0)); then
  status=1
fi
grep -q 'Kernel panic' "$LOG" && log "note: the kernel panicked (see the serial log)"
log "serial log: $LOG"
echo "$summary"
exit "$status"
