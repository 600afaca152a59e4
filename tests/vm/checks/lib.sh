# Shared helpers for check scripts run inside the VM (busybox sh). Source it:
#   . /test/lib.sh
# Every check ends up as exactly one `PASS: ...` or `FAIL: ...` line; finish with `summary`,
# which prints `vm-suite: N passed, M failed` and returns non-zero unless N>0 and M=0.

PASSED=0
FAILED=0

pass() { PASSED=$((PASSED + 1)); echo "PASS: $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL: $*"; }
note() { echo "note: $*"; }

# check DESCRIPTION CMD [ARGS...]: PASS when CMD exits 0, else FAIL with its output.
check() {
    _desc=$1; shift
    if _out=$("$@" 2>&1); then
        pass "$_desc"
    else
        fail "$_desc (rc=$?): $(echo "$_out" | tail -n 3 | tr '\n' ' ')"
    fi
}

# uptime_ms: guest uptime in milliseconds (for timing observations).
uptime_ms() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }

# wait_until SECS CMD [ARGS...]: poll CMD every 0.2 s until it succeeds; 1 on timeout.
wait_until() {
    _deadline=$(( $(uptime_ms) + $1 * 1000 )); shift
    while ! "$@" >/dev/null 2>&1; do
        [ "$(uptime_ms)" -ge "$_deadline" ] && return 1
        sleep 0.2
    done
    return 0
}

# write_attr FILE VALUE: echo into a configfs/sysfs file, reporting path and error on failure.
write_attr() {
    if ! _err=$(echo "$2" 2>&1 >"$1"); then
        echo "write '$2' > $1 failed: $_err" >&2
        return 1
    fi
}

summary() {
    echo "vm-suite: $PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ] && [ "$PASSED" -gt 0 ]
}
