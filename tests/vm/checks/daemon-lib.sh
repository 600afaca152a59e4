# Helpers shared by the daemon suites (daemon-e2e.sh, daemon-guests.sh), run inside the VM by busybox
# sh after /test/lib.sh. build-initramfs.sh installs this file as /test/daemon-lib.sh.
#
# The caller sets: CMP (GNU cmp by path), DAEMON_LOG, CFG (configfs target dir), T_START
# (uptime_ms at the start); optionally SERVE_ARGS (extra `wasmtap serve` arguments, e.g.
# "--data-dir /tmp/wasmtap") and E2E_RUST_LOG. lun_up/lun_down/range_* use and set SD.

ms_since() { echo "$(( $(uptime_ms) - $1 ))"; }
secs() { awk -v ms="$1" 'BEGIN { printf "%.1f", ms / 1000 }'; }
section() { echo "---- $* (t=$(secs "$(ms_since "$T_START")")s)"; }
indent() { sed 's/^/note:   /'; }

# ---- the daemon ----------------------------------------------------------------------
# The daemon runs under a small wrapper so its exit status lands in /run/daemon.rc (busybox sh
# would otherwise keep it as a zombie that `kill -0` still sees). DPID is the daemon itself.
DPID=""
DAEMON_RUNS=0
start_daemon() {
    rm -f /run/daemon.rc /run/daemon.pid
    echo "===== wasmtap serve started at t=$(secs "$(ms_since "$T_START")")s" >>"$DAEMON_LOG"
    ( SERVE_ARGS="${SERVE_ARGS:-}" NO_COLOR=1 sh -c 'echo $$ >/run/daemon.pid; export RUST_LOG=${E2E_RUST_LOG:-info}; exec wasmtap serve --frontend tcmu $SERVE_ARGS' \
          >>"$DAEMON_LOG" 2>&1
      echo $? >/run/daemon.rc ) &
    wait_until 5 test -s /run/daemon.pid || return 1
    DPID=$(cat /run/daemon.pid)
    DAEMON_RUNS=$((DAEMON_RUNS + 1))
    # still alive a moment later (bad flags, no configfs, ... end it at once)
    sleep 1
    [ ! -f /run/daemon.rc ] && kill -0 "$DPID" 2>/dev/null
}
# dlog: the daemon's log without ANSI colour codes (tracing colours field names and levels even
# into a file unless NO_COLOR is set; grep for `kind=Added` or ` ERROR ` must not depend on that)
ESC=$(printf '\033')
dlog() { sed "s/$ESC\[[0-9;]*m//g" "$DAEMON_LOG"; }
daemon_alive() { [ -n "$DPID" ] && [ ! -f /run/daemon.rc ] && kill -0 "$DPID" 2>/dev/null; }
# stop_daemon SECS: SIGTERM, wait up to SECS for the exit; STOP_MS and STOP_RC tell what happened.
STOP_MS=""
STOP_RC=""
stop_daemon() {
    _t=$(uptime_ms)
    kill -TERM "$DPID" 2>/dev/null || { STOP_RC="not running"; return 1; }
    if wait_until "$1" test -f /run/daemon.rc; then
        STOP_MS=$(ms_since "$_t"); STOP_RC=$(cat /run/daemon.rc)
    else
        STOP_MS=$(ms_since "$_t"); STOP_RC="still running after ${1}s"
        kill -KILL "$DPID" 2>/dev/null
        wait_until 5 test -f /run/daemon.rc
    fi
    DPID=""
    [ "$STOP_RC" = 0 ]
}
daemon_log_tail() {
    echo "note: daemon log (last ${1:-25} lines of $DAEMON_LOG):"
    tail -n "${1:-25}" "$DAEMON_LOG" 2>/dev/null | indent
}
# fail_with_log DESC: a FAIL line plus the daemon's recent log and kernel messages
fail_with_log() {
    fail "$*"
    daemon_log_tail 25
    echo "note: recent kernel messages:"
    dmesg | tail -n 15 | indent
}

# ---- the disk ------------------------------------------------------------------------
# our_disks: the sd names whose INQUIRY vendor/model says wasmtap
our_disks() {
    for d in /sys/block/sd*; do
        [ -e "$d/device/vendor" ] || continue
        if cat "$d/device/vendor" "$d/device/model" 2>/dev/null | grep -qi wasmtap; then echo "${d##*/}"; fi
    done
}
show_disks() {
    for d in /sys/block/sd*; do
        [ -e "$d/device/vendor" ] || continue
        echo "${d##*/}: vendor='$(cat "$d/device/vendor")' model='$(cat "$d/device/model")' rev='$(cat "$d/device/rev" 2>/dev/null)' size=$(cat "$d/size") sectors"
    done
}
one_disk() { [ "$(our_disks | wc -l)" -eq 1 ]; }
# new_disks: our disks that were not there when lun_up started (DISKS_BEFORE); one_new_disk: exactly one
DISKS_BEFORE=""
new_disks() { our_disks | awk -v before=" $DISKS_BEFORE " 'index(before, " " $0 " ") == 0'; }
one_new_disk() { [ "$(new_disks | wc -l)" -eq 1 ]; }
# tpg_target_of NAME: the tcm_loop target directory whose LUN links the backstore NAME (empty if none)
tpg_target_of() {
    for _l in "$CFG"/loopback/naa.*/tpgt_*/lun/*/"$1"; do
        [ -L "$_l" ] && { echo "${_l%/tpgt_*}"; return 0; }
    done
}

# lun_up NAME SIZE [ARGS...]: `wasmtap lun create` and wait for its /dev/sdX (the one wasmtap disk
# that was not there before); sets SD.
SD=""
lun_up() {
    _name=$1; _size=$2; shift 2
    DISKS_BEFORE=$(our_disks | tr '\n' ' ')
    _t=$(uptime_ms)
    if out=$(timeout 120 wasmtap lun create "$_name" --size "$_size" "$@" 2>&1); then
        pass "wasmtap lun create $_name --size $_size $* ($(ms_since "$_t") ms): $(echo "$out" | tail -n 1)"
    else
        fail_with_log "wasmtap lun create $_name --size $_size $* failed: $out"
        return 1
    fi
    if wait_until 60 one_new_disk && SD=$(new_disks) && wait_until 10 test -b "/dev/$SD"; then
        pass "/dev/$SD appeared $(ms_since "$_t") ms after lun create: $(show_disks | grep "^$SD:")"
    else
        fail_with_log "no new /dev/sdX with a wasmtap vendor/model within 60 s of lun create (disks: $(show_disks | tr '\n' ';') uio: $(cat /sys/class/uio/uio*/name 2>/dev/null | tr '\n' ' '))"
        SD=""
        return 1
    fi
}

# configfs_clean NAME [TARGET]: no backstore NAME, no UIO device for it, and the tcm_loop target
# TARGET (a loopback/naa.* directory) gone; without TARGET, no tcm_loop target at all is left.
configfs_clean() {
    [ ! -e "$CFG/core/user_0/$1" ] || { echo "$CFG/core/user_0/$1 still exists"; return 1; }
    if [ -n "$2" ]; then
        [ ! -e "$2" ] || { echo "tcm_loop target $2 still exists"; return 1; }
    else
        _left=$(ls -d "$CFG"/loopback/naa.* 2>/dev/null)
        [ -z "$_left" ] || { echo "tcm_loop targets left: $_left"; return 1; }
    fi
    for n in /sys/class/uio/uio*/name; do
        [ -f "$n" ] || continue
        case $(cat "$n") in "tcm-user/0/$1/"*) echo "UIO device ${n%/name} still exists"; return 1 ;; esac
    done
}

# lun_down NAME: `wasmtap lun delete` (daemon running), then sd, the backstore and its tcm_loop
# target are gone (other LUNs may stay).
lun_down() {
    _sd=$SD
    _tgt=$(tpg_target_of "$1")
    _t=$(uptime_ms)
    if out=$(timeout 120 wasmtap lun delete "$1" 2>&1); then
        pass "wasmtap lun delete $1 ($(ms_since "$_t") ms): $(echo "$out" | tail -n 1)"
    else
        fail_with_log "wasmtap lun delete $1 failed: $out"
    fi
    if wait_until 20 test ! -e "/sys/block/${_sd:-none}"; then
        pass "/dev/${_sd:-?} went away with the LUN"
    else
        fail "/dev/$_sd still present 20 s after lun delete"
    fi
    if out=$(configfs_clean "$1" "$_tgt" 2>&1); then
        pass "configfs clean after delete (no core/user_0/$1, no ${_tgt##*/}, no UIO device)"
    else
        fail "configfs not clean after lun delete: $out"
    fi
    SD=""
}

# ---- byte helpers --------------------------------------------------------------------
# range_eq LBA COUNT BS FILE [FILE_LBA]: COUNT blocks of the disk at LBA equal FILE's blocks at
# FILE_LBA (default LBA); direct I/O, so nothing comes from the page cache.
range_eq() {
    dd if="/dev/$SD" bs="$3" skip="$1" count="$2" iflag=direct 2>/dev/null |
        $CMP -n $(( $2 * $3 )) --ignore-initial=0:$(( ${5:-$1} * $3 )) - "$4"
}
# range_zero LBA COUNT BS: COUNT blocks at LBA read back as zeros
range_zero() {
    dd if="/dev/$SD" bs="$3" skip="$1" count="$2" iflag=direct 2>/dev/null |
        $CMP -n $(( $2 * $3 )) - /dev/zero
}
# model_put LBA COUNT BS SRC: update the model (PAT) with COUNT blocks from SRC (file of COUNT blocks)
model_put() { dd if="$4" of="$PAT" bs="$3" seek="$1" count="$2" conv=notrunc 2>/dev/null; }
# raw VPD page to a file; byte helpers on it
vpd_raw() { sg_vpd -r -p "$1" "/dev/$SD" >"/tmp/vpd_$1.bin" 2>/tmp/vpd_$1.err; }
byte_at() { od -An -tu1 -j "$2" -N 1 "$1" | tr -d ' \n'; }
be_at() { # be_at FILE OFFSET LEN: big-endian unsigned integer
    _h=$(od -An -tx1 -j "$2" -N "$3" "$1" | tr -d ' \n')
    [ -n "$_h" ] && echo $((0x$_h))
}
# all_of CMD...: run each command string in turn (eval); stop at and name the first that fails
all_of() {
    for _c in "$@"; do
        eval "$_c" || { echo "failed: $_c"; return 1; }
    done
}
filesize() { wc -c <"$1" | tr -d ' '; }
