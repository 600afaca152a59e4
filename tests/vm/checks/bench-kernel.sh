#!/bin/sh
# The real-kernel benchmark (run by tests/vm/bench.sh, not a CI gate): in ONE boot, the same fio
# workloads through tcm_loop against
#   rd_mcp       LIO's in-kernel RAM disk
#   fileio       LIO's in-kernel file backstore, file on tmpfs
#   tcmu-runner  Debian's tcmu-runner, `qcow` handler serving a raw file on tmpfs
#   native       wasmtap's native RAM disk
#   ram          wasmtap, the `ram` WebAssembly guest
#   raw-file     wasmtap, the `raw-file` WebAssembly guest, file on tmpfs
# Every device is B_SIZE_MB, written end to end before the first round; user backstores get
# hw_max_sectors=2048 (1 MiB). Rounds are interleaved: for each round, each workload, each backstore.
# One line per run:
#   BENCH <backstore> <workload> <round> <iops> <MiB/s> <mean lat us> <daemon cpu us/io> <vm cpu us/io>
#         <daemon sleeps/io>
# (daemon cpu: utime+stime of the userspace daemon from /proc/PID/stat over the run; vm cpu: all
# non-idle CPU time of the VM from /proc/stat, kernel work included; sleeps: voluntary context
# switches of all the daemon's threads per I/O; "-" where there is no daemon).
# Then, with B_MANY set (e.g. "1 8 32"), the many-device phase: N small native and ram LUNs, 4K
# random reads QD32 spread over them (one fio job per LUN, QD 32/N each, at least 1):
#   MANY <kind> <n> <aggregate iops> <daemon cpu us/io> <threads> <rss KiB>
# plus IDLE lines: daemon threads and RSS with N idle devices, and the daemon's wake-ups while idle.
#
# Env (via --append): B_SIZE_MB (128), B_SECS (4), B_ROUNDS (2), B_BACKENDS (all six),
# B_WORKLOADS (all), B_MANY ("" = skip), B_MANY_MB (8).
. /test/lib.sh
. /test/daemon-lib.sh

CFG=/sys/kernel/config/target
SIZE_MB=${B_SIZE_MB:-128}
SECS=${B_SECS:-4}
ROUNDS=${B_ROUNDS:-2}
# lists come comma-separated on the kernel command line
BACKENDS=$(echo "${B_BACKENDS:-rd_mcp fileio tcmu-runner native ram raw-file}" | tr ',' ' ')
WORKLOADS=$(echo "${B_WORKLOADS:-r4k32 w4k32 r4k1 w4k1 r64k8 w64k8 r1m8 w1m8}" | tr ',' ' ')
MANY=$(echo "${B_MANY:-}" | tr ',' ' ')
MANY_MB=${B_MANY_MB:-8}
DAEMON_LOG=/tmp/wasmtap.log
T_START=$(uptime_ms)
SERVE_ARGS="--data-dir /tmp/wasmtap"
E2E_RUST_LOG=${E2E_RUST_LOG:-warn}
BYTES=$((SIZE_MB * 1024 * 1024))
HZ=100 # USER_HZ: the unit of /proc/PID/stat and /proc/stat

# workload NAME -> "rw bs qd"
wl() {
    case $1 in
        r4k32) echo "randread 4k 32" ;; w4k32) echo "randwrite 4k 32" ;;
        r4k1) echo "randread 4k 1" ;; w4k1) echo "randwrite 4k 1" ;;
        r64k8) echo "randread 64k 8" ;; w64k8) echo "randwrite 64k 8" ;;
        r1m8) echo "read 1m 8" ;; w1m8) echo "write 1m 8" ;;
        *) return 1 ;;
    esac
}

sd_list() { ls /sys/block | grep '^sd' | sort; }
# new_sd BEFORE: the one sd name not in BEFORE
new_sd() { sd_list | awk -v b=" $1 " 'index(b, " " $0 " ") == 0'; }

has_new_sd() { [ -n "$(new_sd "$_before")" ]; }
# loop_lun NAME BACKSTORE_DIR WWN: a tcm_loop target (nexus first) with lun_0 -> backstore; sets SD
loop_lun() {
    _before=$(sd_list | tr '\n' ' ')
    _t=$CFG/loopback/$3/tpgt_1
    mkdir -p "$_t" && write_attr "$_t/nexus" "naa.5001405bb0000$(echo "$3" | tail -c 4)" &&
        mkdir "$_t/lun/lun_0" && ln -s "$2" "$_t/lun/lun_0/$1" || return 1
    wait_until 60 has_new_sd || return 1
    SD=$(new_sd "$_before")
    wait_until 10 test -b "/dev/$SD"
}
loop_down() { # loop_down NAME WWN
    _t=$CFG/loopback/$2/tpgt_1
    rm -f "$_t/lun/lun_0/$1"; rmdir "$_t/lun/lun_0"; echo NULL >"$_t/nexus" 2>/dev/null
    rmdir "$_t" "$CFG/loopback/$2" 2>/dev/null
}

cpu_of() { # utime+stime (ticks) of PID
    awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}
# ctxsw_of PID: voluntary context switches of every thread of PID (how often its threads slept)
ctxsw_of() {
    cat /proc/"$1"/task/*/status 2>/dev/null |
        awk '/^voluntary_ctxt_switches:/ { s += $2 } END { print s + 0 }'
}
vm_busy() { # non-idle ticks of all CPUs
    awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}

declare_dev() { eval "DEV_$(echo "$1" | tr '-' '_')=$2"; eval "PID_$(echo "$1" | tr '-' '_')=$3"; }
dev_of() { eval "echo \$DEV_$(echo "$1" | tr '-' '_')"; }
pid_of() { eval "echo \$PID_$(echo "$1" | tr '-' '_')"; }

prefill() { # prefill NAME DEV
    if fio --name=prefill --filename="/dev/$2" --direct=1 --ioengine=libaio --rw=write --bs=1m \
        --iodepth=8 --size="${SIZE_MB}m" --output-format=terse --terse-version=3 >/tmp/prefill.out 2>&1 &&
        [ "$(cut -d';' -f5 /tmp/prefill.out)" = 0 ]; then
        pass "$1: /dev/$2 written end to end ($(cut -d';' -f48 /tmp/prefill.out) KiB/s)"
    else
        fail "$1: prefill of /dev/$2 failed: $(tail -n 3 /tmp/prefill.out)"
        return 1
    fi
}

# ---- bring the backstores up --------------------------------------------------------------
UP=""
add_up() { UP="$UP $1"; }
want() { case " $BACKENDS " in *" $1 "*) return 0 ;; esac; return 1; }

mkdir -p /tmp/wasmtap
if want native || want ram || want raw-file; then
    if start_daemon; then
        pass "wasmtap serve started (pid $DPID)"
        for b in native ram raw-file; do
            want "$b" || continue
            case $b in
                native) dc=native/bench ;; ram) dc=ram ;; raw-file) dc=raw-file/file=bench.img ;;
            esac
            if lun_up "w-$b" "${SIZE_MB}M" --max-transfer 1M --dev-config "$dc"; then
                declare_dev "$b" "$SD" "$DPID"; add_up "$b"
            fi
        done
    else
        fail_with_log "wasmtap serve did not start"
    fi
fi

if want rd_mcp; then
    d=$CFG/core/rd_mcp_0/rd
    if mkdir -p "$d" && write_attr "$d/control" "rd_pages=$((BYTES / 4096))" && write_attr "$d/enable" 1 &&
        loop_lun rd "$d" naa.5001405aa0000001; then
        pass "rd_mcp: /dev/$SD"; declare_dev rd_mcp "$SD" ""; add_up rd_mcp
    else fail "rd_mcp could not be set up"; fi
fi

if want fileio; then
    d=$CFG/core/fileio_0/fio
    dd if=/dev/zero of=/tmp/fileio.img bs=1M count=0 seek="$SIZE_MB" 2>/dev/null
    if mkdir -p "$d" && write_attr "$d/control" "fd_dev_name=/tmp/fileio.img,fd_dev_size=$BYTES" &&
        write_attr "$d/enable" 1 && loop_lun fio "$d" naa.5001405aa0000002; then
        pass "fileio: /dev/$SD"; declare_dev fileio "$SD" ""; add_up fileio
    else fail "fileio could not be set up"; fi
fi

TRPID=""
if want tcmu-runner; then
    # A system D-Bus (tcmu-runner registers there) and tcmu-runner itself, started after wasmtap's
    # devices exist: it answers netlink events of every user backstore.
    grep -q messagebus /etc/passwd || echo 'messagebus:x:101:101::/nonexistent:/bin/false' >>/etc/passwd
    grep -q messagebus /etc/group || echo 'messagebus:x:101:' >>/etc/group
    mkdir -p /run/dbus /var/log /etc/tcmu
    dbus-daemon --system --fork --nopidfile >/tmp/dbus.log 2>&1 || note "dbus-daemon: $(cat /tmp/dbus.log)"
    HANDLERS=/usr/lib/x86_64-linux-gnu/tcmu-runner
    (exec tcmu-runner --handler-path "$HANDLERS" -l /var/log >/tmp/tcmu-runner.out 2>&1) &
    TRPID=$!
    if wait_until 15 sh -c "grep -q 'TCMU' /proc/$TRPID/comm 2>/dev/null || ls /var/log/tcmu-runner.log"; then
        sleep 1
        d=$CFG/core/user_1/trun
        dd if=/dev/zero of=/tmp/trun.img bs=1M count=0 seek="$SIZE_MB" 2>/dev/null
        if kill -0 "$TRPID" 2>/dev/null && mkdir -p "$d" &&
            write_attr "$d/control" "dev_config=qcow//tmp/trun.img" &&
            write_attr "$d/control" "dev_size=$BYTES" && write_attr "$d/control" "hw_max_sectors=2048" &&
            write_attr "$d/enable" 1 && loop_lun trun "$d" naa.5001405aa0000003; then
            pass "tcmu-runner (pid $TRPID): /dev/$SD"; declare_dev tcmu-runner "$SD" "$TRPID"; add_up tcmu-runner
        else
            fail "tcmu-runner device could not be set up: $(tail -n 5 /var/log/tcmu-runner.log /tmp/tcmu-runner.out 2>/dev/null | tr '\n' ' ')"
        fi
    else
        fail "tcmu-runner did not start: $(cat /tmp/tcmu-runner.out)"
    fi
fi

for b in $UP; do prefill "$b" "$(dev_of "$b")"; done

# ---- the rounds ---------------------------------------------------------------------------
note "backstores up:$UP; workloads: $WORKLOADS; ${SECS}s per run, $ROUNDS rounds"
r=1
while [ "$r" -le "$ROUNDS" ]; do
    for w in $WORKLOADS; do
        set -- $(wl "$w")
        rw=$1; bs=$2; qd=$3
        for b in $UP; do
            dev=$(dev_of "$b"); pid=$(pid_of "$b")
            c0=0; x0=0; [ -n "$pid" ] && { c0=$(cpu_of "$pid"); x0=$(ctxsw_of "$pid"); }
            v0=$(vm_busy)
            fio --name=b --filename="/dev/$dev" --direct=1 --ioengine=libaio --rw="$rw" --bs="$bs" \
                --iodepth="$qd" --time_based --runtime="$SECS" --norandommap --randrepeat=0 \
                --size="${SIZE_MB}m" --output-format=terse --terse-version=3 >/tmp/fio.out 2>&1
            v1=$(vm_busy)
            c1=0; x1=0; [ -n "$pid" ] && { c1=$(cpu_of "$pid"); x1=$(ctxsw_of "$pid"); }
            # terse v3: 5 error, 6 read KiB, 8 read iops, 40 read mean lat (us); 47 write KiB,
            # 49 write iops, 81 write mean lat
            line=$(awk -F';' -v b="$b" -v w="$w" -v r="$r" -v bs="$bs" -v c="$((c1 - c0))" \
                -v v="$((v1 - v0))" -v x="$((x1 - x0))" -v hz="$HZ" -v haspid="${pid:+1}" '
                NF > 80 {
                    kib = $6 + $47; iops = $8 + $49; lat = ($6 > 0) ? $40 : $81
                    n = bs; sub(/k$/, "", n); if (bs ~ /m$/) { n = bs; sub(/m$/, "", n); n *= 1024 }
                    ios = kib / n; secs = (iops > 0) ? ios / iops : 1
                    dc = (haspid && ios > 0) ? sprintf("%.1f", c * 1e6 / hz / ios) : "-"
                    vc = (ios > 0) ? sprintf("%.1f", v * 1e6 / hz / ios) : "-"
                    xc = (haspid && ios > 0) ? sprintf("%.3f", x / ios) : "-"
                    printf "BENCH %s %s %d %.0f %.1f %.0f %s %s %s err=%s\n", b, w, r, iops, kib / 1024 / secs, lat, dc, vc, xc, $5
                }' /tmp/fio.out)
            if [ -n "$line" ] && echo "$line" | grep -q 'err=0$'; then
                echo "${line% err=0}"
            else
                fail "$b $w round $r: fio failed: $(tail -n 3 /tmp/fio.out | tr '\n' ' ')"
            fi
        done
    done
    r=$((r + 1))
done
pass "benchmark rounds done"

# ---- profiles (B_PROFILE="backstore:workload ...", for finding costs, not figures) -----------
task_cpu() { # task_cpu PID: "tid comm ticks" per thread
    for t in /proc/"$1"/task/*; do
        awk -v t="${t##*/}" '{ c = $0; sub(/^[^(]*\(/, "", c); sub(/\).*$/, "", c); n = split($0, f, ") ");
            split(f[n], g, " "); print t, c, g[12] + g[13] }' "$t/stat" 2>/dev/null
    done
}
for pw in $(echo "${B_PROFILE:-}" | tr ',' ' '); do
    b=${pw%%:*}; w=${pw#*:}
    dev=$(dev_of "$b"); pid=$(pid_of "$b")
    [ -n "$dev" ] || continue
    set -- $(wl "$w"); rw=$1; bs=$2; qd=$3
    echo "---- profile $b $w"
    echo 0 >/proc/sys/kernel/kptr_restrict 2>/dev/null
    echo -1 >/proc/sys/kernel/perf_event_paranoid 2>/dev/null
    fio_profile() {
        fio --name=b --filename="/dev/$dev" --direct=1 --ioengine=libaio --rw="$rw" --bs="$bs" \
            --iodepth="$qd" --time_based --runtime="$SECS" --norandommap --randrepeat=0 \
            --size="${SIZE_MB}m" --output-format=terse --terse-version=3 >/tmp/fio.out 2>&1
    }
    # perf and strace in separate runs: strace's ptrace stops would dominate perf's profile
    if command -v perf >/dev/null; then
        perf record -a -g -F 999 -o /tmp/perf.data -- sleep "$SECS" >/tmp/perf.rec 2>&1 &
        PP=$!
        fio_profile
        wait "$PP"
        echo "profile: fio iops under perf $(awk -F';' '{ print $8 + $49 }' /tmp/fio.out)"
    fi
    if [ -n "$pid" ] && command -v strace >/dev/null; then
        timeout -s INT "$SECS" strace -c -f -p "$pid" -o /tmp/strace.out >/dev/null 2>&1 &
        SP=$!
        fio_profile
        wait "$SP"
        echo "profile: fio iops under strace $(awk -F';' '{ print $8 + $49 }' /tmp/fio.out)"
    fi
    [ -n "$pid" ] && task_cpu "$pid" >/tmp/tc0
    fio_profile
    echo "profile: fio iops $(awk -F';' '{ print $8 + $49 }' /tmp/fio.out)"
    if [ -n "$pid" ]; then
        task_cpu "$pid" >/tmp/tc1
        echo "profile: per-thread CPU ticks over the run (tid comm ticks):"
        awk 'NR == FNR { a[$1] = $3; next } { d = $3 - a[$1]; if (d > 0) print "  ", $1, $2, d }' /tmp/tc0 /tmp/tc1
    fi
    [ -f /tmp/strace.out ] && { echo "profile: strace -c"; head -n 30 /tmp/strace.out | indent; rm -f /tmp/strace.out; }
    if [ -f /tmp/perf.data ]; then
        echo "profile: perf report"
        perf report -i /tmp/perf.data --stdio --no-children --sort comm,dso,sym -g none 2>/dev/null |
            grep -v '^$' | grep -v '^#' | grep '%' | head -n 70 | indent
        echo "profile: perf report, the daemon's threads only"
        perf report -i /tmp/perf.data --stdio --no-children --sort comm,dso,sym -g none \
            --comms "$(cat /proc/"$pid"/task/*/comm 2>/dev/null | sort -u | tr '\n' ',' | sed 's/,$//')" 2>/dev/null |
            grep -v '^$' | grep -v '^#' | grep '%' | head -n 50 | indent
        rm -f /tmp/perf.data
    fi
    PP=""; SP=""
done

# ---- tear down the peers (before the many-device phase) ----------------------------------
if [ -n "$TRPID" ]; then
    loop_down trun naa.5001405aa0000003; rmdir "$CFG/core/user_1/trun" 2>/dev/null
    kill "$TRPID" 2>/dev/null; wait "$TRPID" 2>/dev/null
fi
case " $UP " in *" rd_mcp "*) loop_down rd naa.5001405aa0000001; rmdir "$CFG/core/rd_mcp_0/rd" ;; esac
case " $UP " in *" fileio "*) loop_down fio naa.5001405aa0000002; rmdir "$CFG/core/fileio_0/fio"; rm -f /tmp/fileio.img ;; esac
for b in native ram raw-file; do
    case " $UP " in *" $b "*) timeout 60 wasmtap lun delete "w-$b" >/dev/null 2>&1 || note "lun delete w-$b failed" ;; esac
done
rm -f /tmp/trun.img /tmp/wasmtap/devices/*/bench.img

# ---- many devices ----------------------------------------------------------------------------
threads_of() { ls "/proc/$1/task" 2>/dev/null | wc -l; }
rss_of() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
if [ -n "$MANY" ] && [ -n "$DPID" ] && daemon_alive; then
    for kind in native ram; do
        for n in $MANY; do
            t0=$(threads_of "$DPID"); m0=$(rss_of "$DPID")
            i=1; devs=""
            while [ "$i" -le "$n" ]; do
                case $kind in native) dc=native/m ;; ram) dc=ram ;; esac
                if lun_up "m-$kind-$i" "${MANY_MB}M" --dev-config "$dc" >/tmp/lun.out 2>&1; then
                    devs="$devs $SD"
                else
                    cat /tmp/lun.out
                fi
                i=$((i + 1))
            done
            set -- $devs
            if [ "$#" -ne "$n" ]; then
                fail "many: only $# of $n $kind LUNs came up"
            else
                sleep 2
                t1=$(threads_of "$DPID"); m1=$(rss_of "$DPID"); x0=$(ctxsw_of "$DPID")
                sleep 5
                x1=$(ctxsw_of "$DPID")
                echo "IDLE $kind $n threads=$t1 (+$((t1 - t0))) rss_kib=$m1 (+$((m1 - m0)), $(((m1 - m0) / n)) per device) wakeups_per_s=$(((x1 - x0) / 5))"
                qd=$((32 / n)); [ "$qd" -lt 1 ] && qd=1
                args=""
                for d in $devs; do args="$args --name=j$d --filename=/dev/$d"; done
                c0=$(cpu_of "$DPID")
                fio --direct=1 --ioengine=libaio --rw=randread --bs=4k --iodepth="$qd" --time_based \
                    --runtime="$SECS" --norandommap --randrepeat=0 --size="${MANY_MB}m" --group_reporting \
                    --output-format=terse --terse-version=3 $args >/tmp/fio.out 2>&1
                c1=$(cpu_of "$DPID")
                awk -F';' -v k="$kind" -v n="$n" -v c="$((c1 - c0))" -v hz="$HZ" -v t="$(threads_of "$DPID")" \
                    -v m="$(rss_of "$DPID")" 'NF > 80 && $5 == 0 {
                        ios = $6 / 4; printf "MANY %s %d %.0f %.1f threads=%d rss_kib=%d\n", k, n, $8, c * 1e6 / hz / ios, t, m }' /tmp/fio.out
            fi
            i=1
            while [ "$i" -le "$n" ]; do
                timeout 60 wasmtap lun delete "m-$kind-$i" >/dev/null 2>&1; i=$((i + 1))
            done
        done
    done
    pass "many-device phase done"
fi

if [ -n "$DPID" ]; then
    echo "note: daemon log tail:"; tail -n 20 "$DAEMON_LOG" | indent
    stop_daemon 15 || note "daemon stop: $STOP_RC"
fi
summary
