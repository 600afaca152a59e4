#!/bin/sh
# The control plane against the real kernel, run inside the VM as /test/run (busybox sh). Needs
# /usr/bin/wasmtap and /test/raw-file.wasm in the image (tests/vm/ci.sh adds them).
#
# Everything goes through the JSON API with the `wasmtap` CLI, as an operator would:
#  1. `wasmtap serve` (tcmu frontend, web API on 127.0.0.1:8470, admin token from a 0600 file);
#  2. admin creates tenant acme and a token; acme creates a 64 MiB device on the built-in raw-file
#     module; admin exports it as a LUN (configfs backstore with dev_config wasmtap/@<id>);
#  3. the LUN appears as /dev/sdX; a pattern written over the whole disk reads back identical; the
#     device's counters in the API moved;
#  4. acme uploads raw-file again as version 2 and hot-swaps the device to it while a dd read-back
#     runs; the read-back still matches, the kernel logged no I/O error;
#  5. the daemon is restarted while the LUN exists: the device comes back bound to version 2 and the
#     disk still holds the pattern;
#  6. unexport removes the disk and the configfs backstore; delete removes the device; SIGTERM.
. /test/lib.sh

CMP=/usr/bin/cmp
SIZE_MB=64
DAEMON_LOG=/run/wasmtap-serve.log
CFG=/sys/kernel/config/target
DATA_DIR=/tmp/wasmtap
ADMIN=wt_vmadmin0000000000000000000000000000000000
ADMIN_FILE=/tmp/wasmtap-admin.token
SERVE_ARGS="--data-dir $DATA_DIR --admin-token-file $ADMIN_FILE"
PAT=/tmp/pattern
T_START=$(uptime_ms)
. /test/daemon-lib.sh

export WASMTAP_URL=http://127.0.0.1:8470
as_admin() { WASMTAP_TOKEN=$ADMIN timeout 120 wasmtap "$@"; }
as_acme() { WASMTAP_TOKEN=$TOK timeout 120 wasmtap "$@"; }
api_up() { as_admin tenant list >/dev/null 2>&1; }
# field JSON KEY: the first "KEY": value in JSON (numbers and strings)
field() { echo "$1" | tr ',{}' '\n\n\n' | grep "\"$2\"" | head -n 1 | sed 's/.*: *//; s/"//g; s/ //g'; }

section "daemon start"
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up
mkdir -p "$DATA_DIR"
(umask 077 && echo "$ADMIN" >"$ADMIN_FILE")
head -c $((SIZE_MB * 1024 * 1024)) /dev/urandom >"$PAT"
if start_daemon && wait_until 60 api_up; then
    pass "wasmtap serve $SERVE_ARGS: API answers on $WASMTAP_URL"
else
    fail_with_log "the daemon or its API did not come up"
    summary; exit 1
fi
tcmu_and_url() { dlog | grep -q 'serving TCMU devices' && dlog | grep -q 'web UI and API at'; }
check "the daemon serves the tcmu frontend and printed the UI address" tcmu_and_url

section "tenant, device, export"
check "admin: tenant create acme" as_admin tenant create acme
TOK=$(as_admin tenant token create acme --label vm 2>&1 | grep -o 'wt_[0-9a-f]*' | head -n 1)
check "admin: token for acme created ($(echo "$TOK" | cut -c1-8)...)" test -n "$TOK"
out=$(as_acme device create vol --size ${SIZE_MB}M --module raw-file --json 2>&1)
ID=$(field "$out" id)
check "acme: device create vol (${SIZE_MB} MiB, raw-file) -> id $ID" test -n "$ID"
out=$(as_acme device export "$ID" 2>&1)
check "acme cannot export (admin only): $(echo "$out" | head -n 1)" sh -c "echo '$out' | grep -q forbidden"
DISKS_BEFORE=""
_t=$(uptime_ms)
if out=$(as_admin device export "$ID" 2>&1); then
    pass "admin: device export $ID: $(echo "$out" | tr '\n' ' ' | cut -c1-160)"
else
    fail_with_log "admin: device export failed: $out"
fi
if wait_until 60 one_new_disk && SD=$(new_disks) && wait_until 10 test -b "/dev/$SD"; then
    pass "/dev/$SD appeared $(ms_since "$_t") ms after the export: $(show_disks | grep "^$SD:")"
else
    fail_with_log "no wasmtap disk within 60 s of the export (uio: $(cat /sys/class/uio/uio*/name 2>/dev/null | tr '\n' ' '))"
    summary; exit 1
fi
check "the UIO device is tcm-user/0/wasmtap-dev$ID/wasmtap/@$ID" \
    sh -c "cat /sys/class/uio/uio*/name | grep -qx 'tcm-user/0/wasmtap-dev$ID/wasmtap/@$ID'"
check "sd capacity is ${SIZE_MB} MiB" test "$(cat /sys/block/$SD/size)" -eq $((SIZE_MB * 2048))

section "data through the LUN"
_t=$(uptime_ms)
check "dd wrote the pattern over the whole disk (O_DIRECT)" dd if="$PAT" of="/dev/$SD" bs=1M oflag=direct
check "whole disk read back byte-identical ($(ms_since "$_t") ms with the write)" \
    sh -c "dd if=/dev/$SD bs=1M iflag=direct 2>/dev/null | $CMP - $PAT"
show=$(as_acme device show "$ID" --json 2>&1)
W=$(field "$show" write_bytes); R=$(field "$show" read_bytes)
check "API counters moved: write_bytes=$W read_bytes=$R" sh -c "[ ${W:-0} -ge $((SIZE_MB * 1048576)) ] && [ ${R:-0} -ge $((SIZE_MB * 1048576)) ]"
check "the backing file is the pattern" $CMP "$DATA_DIR/devices/$ID/disk.img" "$PAT"

section "hot swap under I/O"
out=$(as_acme module upload /test/raw-file.wasm --name raw-file-v2 --version 2 --json 2>&1)
MID=$(field "$out" id)
check "acme: module upload raw-file-v2 -> id $MID" test -n "$MID"
# Whole-disk read-backs, one after the other, until one has started after the swap finished: the
# pass running during the swap must match too.
rm -f /tmp/swapped /tmp/swapcmp.rc
( rc=0; n=0; after=0
  while [ "$after" -lt 1 ]; do
      [ -f /tmp/swapped ] && after=1
      dd if=/dev/$SD bs=64k iflag=direct 2>/dev/null | $CMP - "$PAT" >>/tmp/swapcmp 2>&1 || rc=1
      n=$((n + 1))
  done
  echo "$n" >/tmp/swapcmp.passes; echo $rc >/tmp/swapcmp.rc ) &
sleep 1
if out=$(as_acme device bind "$ID" --module "$MID" 2>&1); then
    pass "acme: hot swap to raw-file-v2 while read-backs run: $(echo "$out" | head -n 1)"
else
    fail_with_log "hot swap failed: $out"
fi
touch /tmp/swapped
wait_until 120 test -f /tmp/swapcmp.rc
check "every read-back around the swap matches the pattern ($(cat /tmp/swapcmp.passes 2>/dev/null) passes of ${SIZE_MB} MiB; $(cat /tmp/swapcmp 2>/dev/null))" test "$(cat /tmp/swapcmp.rc)" = 0
swap_log=$(dlog | grep -c 'hot swap' )
note "daemon log lines about the swap: $swap_log: $(dlog | grep "hot swap" | sed "s/^[^ ]* *//" | cut -c1-160 | tr "\n" "|")"
check "after the swap, writes and reads still match" \
    all_of "dd if=$PAT of=/dev/$SD bs=1M count=8 oflag=direct 2>/dev/null" "dd if=/dev/$SD bs=1M count=8 iflag=direct 2>/dev/null | $CMP -n 8388608 - $PAT"

section "daemon restart with the LUN in place"
if stop_daemon 20; then pass "SIGTERM: exit 0 in $STOP_MS ms"; else fail_with_log "SIGTERM: $STOP_RC"; fi
if start_daemon && wait_until 60 api_up; then pass "daemon restarted"; else fail_with_log "restart failed"; fi
show=$(as_acme device show "$ID" 2>&1)
check "the device is bound to raw-file-v2 after the restart: $(echo "$show" | grep module)" \
    sh -c "echo '$show' | grep module | grep -q 'raw-file-v2'"
wait_until 20 sh -c "dlog | grep -q 'attached managed device'"
check "the disk still holds the pattern" sh -c "dd if=/dev/$SD bs=1M iflag=direct 2>/dev/null | $CMP - $PAT"

section "unexport and delete"
_sd=$SD
check "admin: device unexport" as_admin device unexport "$ID"
check "/dev/$_sd went away" wait_until 20 test ! -e "/sys/block/$_sd"
check "configfs backstore wasmtap-dev$ID removed" test ! -e "$CFG/core/user_0/wasmtap-dev$ID"
check "acme: device rm" as_acme device rm "$ID"
check "its storage directory is gone" test ! -e "$DATA_DIR/devices/$ID"
if stop_daemon 20; then pass "SIGTERM: exit 0 in $STOP_MS ms"; else fail_with_log "SIGTERM: $STOP_RC"; fi
errs=$(dmesg | grep -iE 'I/O error|critical (target|medium)|tcmu.*(fail|broken|error)|blk_update_request' | head -n 5)
check "kernel log: no I/O errors or TCMU failures $(echo "$errs" | tr '\n' '|')" test -z "$errs"
unexpected=$(dlog | grep ' ERROR ')
check "the daemon logged no ERROR $(echo "$unexpected" | head -n 3 | tr '\n' '|')" test -z "$unexpected"
n=$(wc -l <"$DAEMON_LOG")
echo "note: daemon log ($n lines, last 60):"
dlog | tail -n 60 | indent
note "total test time $(secs "$(ms_since "$T_START")") s guest"
summary
