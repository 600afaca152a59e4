#!/bin/sh
# What a strict SCSI initiator checks, against the real kernel, run inside the VM as /test/run
# (busybox sh). Needs /usr/bin/wasmtap in the image:
#   cargo build --release -p wasmtap
#   tests/vm/run.sh --check tests/vm/checks/scsi-strict.sh --add target/release/wasmtap:/usr/bin/wasmtap
#
# Every LUN here is made as targetcli would make it: raw configfs writes, `hw_max_sectors` left at
# the kernel's default (128), a tcm_loop target, nexus and LUN symlink. The same checks run for the
# native RAM backstore and the `ram` and `raw-file` guests, since whatever a LUN advertises must be
# what it enforces, identically for every backstore:
#  - standard INQUIRY version descriptors (sg_inq -d);
#  - Block Limits (sg_vpd -p bl): MAXIMUM TRANSFER LENGTH = hw_max_sectors, MAXIMUM COMPARE AND
#    WRITE LENGTH = min(that, 255);
#  - READ(10)/WRITE(10)/VERIFY(10, BYTCHK=1)/WRITE AND VERIFY(10) of exactly that many blocks
#    succeed, one block more is INVALID FIELD IN CDB (sg_raw);
#  - COMPARE AND WRITE of the maximum succeeds, one block more is INVALID FIELD IN CDB
#    (sg_compare_and_write);
#  - the daemon logged no ERROR; everything is torn down by hand and configfs is left empty.
. /test/lib.sh

CMP=/usr/bin/cmp
DAEMON_LOG=/run/wasmtap-serve.log
CFG=/sys/kernel/config/target
SERVE_ARGS="--data-dir /tmp/wasmtap"
SIZE_MB=64
T_START=$(uptime_ms)

. /test/daemon-lib.sh

# raw OUT_LEN IN_FILE CDB...: sg_raw on SD; sets RAW_OUT (its output) and returns its exit status.
# OUT_LEN 0 = no data-in; IN_FILE - = no data-out.
raw() {
    _rl=$1; _in=$2; shift 2
    set -- "/dev/$SD" "$@"
    [ "$_rl" -gt 0 ] && set -- -r "$_rl" -o /tmp/raw.out "$@"
    [ "$_in" != - ] && set -- -s "$(filesize "$_in")" -i "$_in" "$@"
    RAW_OUT=$(sg_raw "$@" 2>&1)
}
# invalid_field: RAW_OUT is CHECK CONDITION, ILLEGAL REQUEST, INVALID FIELD IN CDB
invalid_field() { echo "$RAW_OUT" | grep -qi 'illegal request' && echo "$RAW_OUT" | grep -qi 'invalid field in cdb'; }
short() { echo "$RAW_OUT" | grep -iE 'status|sense|illegal|invalid|error' | head -n 4 | tr '\n' ' '; }
# cdb10 OP B1 LBA LEN: a 10-byte CDB as hex words for sg_raw
cdb10() {
    printf '%02x %02x %02x %02x %02x %02x 00 %02x %02x 00' "$1" "$2" \
        $(( ($3 >> 24) & 255 )) $(( ($3 >> 16) & 255 )) $(( ($3 >> 8) & 255 )) $(( $3 & 255 )) \
        $(( ($4 >> 8) & 255 )) $(( $4 & 255 ))
}

# mk_on HBA NAME DEV_CONFIG N: backstore core/user_HBA/NAME and tcm_loop target naa.5001405c0ffee1N0,
# nexus, lun_0 and the symlink (raw configfs writes, as targetcli would); rm_on HBA NAME N undoes it
mk_on() {
    _b=$CFG/core/user_$1/$2
    _tpg=$CFG/loopback/naa.5001405c0ffee1${4}0/tpgt_1
    mkdir -p "$CFG/core/user_$1" && mkdir "$_b" &&
    write_attr "$_b/control" "dev_config=$3" &&
    write_attr "$_b/control" "dev_size=$((SIZE_MB * 1048576))" &&
    write_attr "$_b/enable" 1 &&
    mkdir -p "$_tpg" && write_attr "$_tpg/nexus" "naa.5001405c0ffee1${4}1" &&
    mkdir "$_tpg/lun/lun_0" && ln -s "$_b" "$_tpg/lun/lun_0/strict$4"
}
rm_on() {
    _tgt=$CFG/loopback/naa.5001405c0ffee1${3}0
    rm "$_tgt/tpgt_1/lun/lun_0/strict$3" && rmdir "$_tgt/tpgt_1/lun/lun_0" &&
    write_attr "$_tgt/tpgt_1/nexus" NULL && rmdir "$_tgt/tpgt_1" && rmdir "$_tgt" &&
    rmdir "$CFG/core/user_$1/$2"
}

# ---- checks on one LUN (SD set) --------------------------------------------------------
lun_checks() {
    _l=$1; _name=$2
    MAX_SECT=$(cat "$CFG/core/user_0/$_name/attrib/hw_max_sectors")
    note "$_l: hw_max_sectors=$MAX_SECT (kernel default), block size $(cat "$CFG/core/user_0/$_name/attrib/hw_block_size")"

    vd=$(sg_inq -d "/dev/$SD" 2>&1 | sed -n '/Version descriptors/,$p')
    check "$_l: sg_inq -d: version descriptors SAM-5, SPC-4, SBC-3 $(echo "$vd" | tr -s ' \n' ' ')" \
        all_of "echo \"\$vd\" | grep -q SAM-5" "echo \"\$vd\" | grep -q SPC-4" "echo \"\$vd\" | grep -q SBC-3"

    bl=$(sg_vpd -p bl "/dev/$SD" 2>&1)
    mt=$(echo "$bl" | sed -n 's/.*Maximum transfer length: *\([0-9]*\).*/\1/p')
    mcaw=$(echo "$bl" | sed -n 's/.*Maximum compare and write length: *\([0-9]*\).*/\1/p')
    want_caw=$MAX_SECT; [ "$want_caw" -gt 255 ] && want_caw=255
    if [ "$mt" = "$MAX_SECT" ] && [ "$mcaw" = "$want_caw" ]; then
        pass "$_l: sg_vpd -p bl: maximum transfer length $mt blocks = hw_max_sectors, maximum compare and write length $mcaw"
    else
        fail "$_l: sg_vpd -p bl: maximum transfer '$mt' (want $MAX_SECT), compare and write '$mcaw' (want $want_caw): $(echo "$bl" | head -n 12 | tr '\n' ';')"
    fi

    m=$MAX_SECT; m1=$((MAX_SECT + 1))
    dd if=/dev/urandom of=/tmp/w_m bs=512 count="$m" 2>/dev/null
    dd if=/dev/urandom of=/tmp/w_m1 bs=512 count="$m1" 2>/dev/null
    # At the limit: accepted, and the data is there.
    if raw 0 /tmp/w_m $(cdb10 0x2A 0 1024 "$m") && raw $((m * 512)) - $(cdb10 0x28 0 1024 "$m") &&
       $CMP -s /tmp/raw.out /tmp/w_m; then
        pass "$_l: WRITE(10) + READ(10) of $m blocks (the maximum): good, data read back equal"
    else
        fail "$_l: WRITE(10)/READ(10) of $m blocks: $(short)"
    fi
    if raw 0 /tmp/w_m $(cdb10 0x2F 0x02 1024 "$m") && raw 0 /tmp/w_m $(cdb10 0x2E 0x02 2048 "$m"); then
        pass "$_l: VERIFY(10) BYTCHK=1 and WRITE AND VERIFY(10) of $m blocks: good"
    else
        fail "$_l: VERIFY(10)/WRITE AND VERIFY(10) of $m blocks: $(short)"
    fi
    # One block more: INVALID FIELD IN CDB, nothing written.
    for op in "READ(10) 0x28 0 - $((m1 * 512))" "WRITE(10) 0x2A 0 /tmp/w_m1 0" \
              "VERIFY(10)_BYTCHK=1 0x2F 0x02 /tmp/w_m1 0" "WRITE_AND_VERIFY(10) 0x2E 0 /tmp/w_m1 0"; do
        set -- $op
        if raw "$5" "$4" $(cdb10 "$2" "$3" 4096 "$m1"); then
            fail "$_l: $1 of $m1 blocks (one above the advertised maximum) succeeded"
        elif invalid_field; then
            pass "$_l: $1 of $m1 blocks: INVALID FIELD IN CDB"
        else
            fail "$_l: $1 of $m1 blocks: wrong error: $(short)"
        fi
    done
    if range_zero 4096 "$m1" 512; then
        pass "$_l: the refused writes left LBA 4096.. untouched (zeros)"
    else
        fail "$_l: a refused write changed LBA 4096.."
    fi

    # COMPARE AND WRITE: compare with what is there (the blocks written above), write new data.
    c=$want_caw; c1=$((want_caw + 1))
    dd if=/tmp/w_m of=/tmp/caw bs=512 count="$c" 2>/dev/null
    dd if=/dev/urandom bs=512 count="$c" 2>/dev/null >>/tmp/caw
    if out=$(sg_compare_and_write --in=/tmp/caw --lba=1024 --num="$c" "/dev/$SD" 2>&1) &&
       range_eq 1024 "$c" 512 /tmp/caw "$c"; then
        pass "$_l: COMPARE AND WRITE of $c blocks (the maximum): good, new data in place"
    else
        fail "$_l: COMPARE AND WRITE of $c blocks: $(echo "$out" | head -n 3 | tr '\n' ' ')"
    fi
    if [ "$c1" -le 255 ]; then
        dd if=/dev/zero of=/tmp/caw1 bs=512 count=$((2 * c1)) 2>/dev/null
        # sg_raw, to see the additional sense: 89h, LBA 4096, NUMBER OF LOGICAL BLOCKS c1.
        if raw 0 /tmp/caw1 89 00 00 00 00 00 00 00 10 00 00 00 00 $(printf %02x "$c1") 00 00; then
            fail "$_l: COMPARE AND WRITE of $c1 blocks (above the maximum) succeeded"
        elif invalid_field; then
            pass "$_l: COMPARE AND WRITE of $c1 blocks: INVALID FIELD IN CDB"
        else
            fail "$_l: COMPARE AND WRITE of $c1 blocks: wrong error: $(short)"
        fi
    fi
    rm -f /tmp/w_m1 /tmp/caw /tmp/caw1 /tmp/raw.out
    new_commands "$_l"
    rm -f /tmp/w_m
}

# cdb16 OP B1 LBA LEN: a 16-byte CDB as hex words (32-bit LBA is enough here)
cdb16() {
    printf '%02x %02x 00 00 00 00 %02x %02x %02x %02x %02x %02x %02x %02x 00 00' "$1" "$2" \
        $(( ($3 >> 24) & 255 )) $(( ($3 >> 16) & 255 )) $(( ($3 >> 8) & 255 )) $(( $3 & 255 )) \
        $(( ($4 >> 24) & 255 )) $(( ($4 >> 16) & 255 )) $(( ($4 >> 8) & 255 )) $(( $4 & 255 ))
}
# cdb12 OP B1 LBA LEN
cdb12() {
    printf '%02x %02x %02x %02x %02x %02x %02x %02x %02x %02x 00 00' "$1" "$2" \
        $(( ($3 >> 24) & 255 )) $(( ($3 >> 16) & 255 )) $(( ($3 >> 8) & 255 )) $(( $3 & 255 )) \
        $(( ($4 >> 24) & 255 )) $(( ($4 >> 16) & 255 )) $(( ($4 >> 8) & 255 )) $(( $4 & 255 ))
}
sense_has() { echo "$RAW_OUT" | grep -qi "$1"; }
# expect DESC WANT CMD...: run a raw() command; WANT is good, or a phrase its sense must contain
expect() {
    _d=$1; _w=$2; shift 2
    if "$@"; then _ok=good; else _ok=failed; fi
    if [ "$_w" = good ] && [ "$_ok" = good ]; then
        pass "$_d: good"
    elif [ "$_w" != good ] && [ "$_ok" = failed ] && sense_has "$_w"; then
        pass "$_d: $_w"
    else
        fail "$_d: expected $_w, got $_ok: $(short)"
    fi
}

# ---- commands added for strict initiators (issue 13, item 4) ----------------------------
new_commands() {
    _l=$1
    # /tmp/w_m (m blocks) is at LBA 2048 (WRITE AND VERIFY above).
    expect "$_l: VERIFY(12) BYTCHK=1, $m blocks equal to the medium" good raw 0 /tmp/w_m $(cdb12 0xAF 0x02 2048 "$m")
    dd if=/dev/urandom of=/tmp/w_x bs=512 count="$m" 2>/dev/null
    expect "$_l: VERIFY(12) BYTCHK=1 with other data" "miscompare" raw 0 /tmp/w_x $(cdb12 0xAF 0x02 2048 "$m")
    expect "$_l: VERIFY(12) of $m1 blocks (above the maximum)" "invalid field in cdb" raw 0 /tmp/w_x $(cdb12 0xAF 0x02 2048 "$m1")
    if raw 0 /tmp/w_x $(cdb12 0xAE 0 8192 "$m") && range_eq 8192 "$m" 512 /tmp/w_x 0; then
        pass "$_l: WRITE AND VERIFY(12) of $m blocks: good, data in place"
    else
        fail "$_l: WRITE AND VERIFY(12): $(short)"
    fi
    # PRE-FETCH: a hint; CONDITION MET when the range fits the (notional) cache.
    raw 0 - $(cdb10 0x34 0 0 16)
    if echo "$RAW_OUT" | grep -qi 'condition met'; then
        pass "$_l: PRE-FETCH(10) of 16 blocks: CONDITION MET"
    else
        fail "$_l: PRE-FETCH(10) of 16 blocks: expected CONDITION MET: $(short)"
    fi
    expect "$_l: PRE-FETCH(16) past the last block" "out of range" raw 0 - $(cdb16 0x90 0 $((SIZE_MB * 2048)) 1)
    # ORWRITE(16): zeros, then 0F and F0 ORed in, read back FF.
    head -c 512 /dev/zero >/tmp/z1
    printf '\017%.0s' $(seq 1 512) >/tmp/o1; printf '\360%.0s' $(seq 1 512) >/tmp/o2
    printf '\377%.0s' $(seq 1 512) >/tmp/o3
    if raw 0 /tmp/z1 $(cdb10 0x2A 0 12288 1) && raw 0 /tmp/o1 $(cdb16 0x8B 0 12288 1) &&
       raw 0 /tmp/o2 $(cdb16 0x8B 0 12288 1) && range_eq 12288 1 512 /tmp/o3 0; then
        pass "$_l: ORWRITE(16) of 0Fh then F0h over zeros reads back FFh"
    else
        fail "$_l: ORWRITE(16): $(short)"
    fi
    expect "$_l: ORWRITE(16) with ORPROTECT=1" "invalid field in cdb" raw 0 /tmp/o1 $(cdb16 0x8B 0x20 12288 1)
    # WRITE ATOMIC(16): within MAXIMUM ATOMIC TRANSFER LENGTH, and one block above it.
    matl=$(be_at /tmp/vpd_0xb0.bin 44 4 2>/dev/null)
    vpd_raw 0xb0 && matl=$(be_at /tmp/vpd_0xb0.bin 44 4)
    if [ -n "$matl" ] && [ "$matl" -gt 0 ]; then
        dd if=/dev/urandom of=/tmp/wa bs=512 count="$matl" 2>/dev/null
        dd if=/dev/urandom of=/tmp/wa1 bs=512 count=$((matl + 1)) 2>/dev/null
        if raw 0 /tmp/wa $(cdb16 0x9C 0 16384 "$matl") && range_eq 16384 "$matl" 512 /tmp/wa 0; then
            pass "$_l: WRITE ATOMIC(16) of $matl blocks (the advertised maximum atomic transfer length): good, data in place"
        else
            fail "$_l: WRITE ATOMIC(16) of $matl blocks: $(short)"
        fi
        expect "$_l: WRITE ATOMIC(16) of $((matl + 1)) blocks" "invalid field in cdb" raw 0 /tmp/wa1 $(cdb16 0x9C 0 16384 $((matl + 1)))
    else
        fail "$_l: Block Limits has no MAXIMUM ATOMIC TRANSFER LENGTH (bytes 44..47): '$matl'"
    fi
    # READ DEFECT DATA(10), grown list, short block format: the 4-byte header, no defects.
    if raw 4 - 37 00 08 00 00 00 00 00 04 00 && [ "$(od -An -tx1 /tmp/raw.out | tr -d ' \n')" = "00080000" ]; then
        pass "$_l: READ DEFECT DATA(10): header GLISTV, short block format, length 0"
    else
        fail "$_l: READ DEFECT DATA(10): $(od -An -tx1 /tmp/raw.out 2>/dev/null | tr -d '\n') $(short)"
    fi
    rm -f /tmp/w_x /tmp/z1 /tmp/o1 /tmp/o2 /tmp/o3 /tmp/wa /tmp/wa1
    block_status "$_l"
    extended_copy "$_l"
    sanitize "$_l"
}

# lba_status LBA: the first descriptor of GET LBA STATUS at LBA as "start blocks status" (decimal)
lba_status() {
    _d=$(sg_get_lba_status --lba="$1" --maxlen=24 -b "/dev/$SD" 2>/tmp/gls.err | grep '^0x' | head -n 1)
    set -- $_d
    [ -n "$1" ] && echo "$(( $1 )) $(( $2 )) $3"
}

# ---- GET LBA STATUS: real block status from every backstore ---------------------------
block_status() {
    _l=$1
    B=65536   # 32 MiB into the 64 MiB LUN, chunk (64 KiB) aligned, untouched so far
    if sg_unmap --lba=$B --num=4096 "/dev/$SD" 2>/tmp/u.err; then
        got=$(lba_status $B)
        if [ "$got" = "$B 4096 1" ] || { [ "${got%% *}" = "$B" ] && [ "$(echo "$got" | cut -d' ' -f3)" = 1 ] &&
                                          [ "$(echo "$got" | cut -d' ' -f2)" -ge 4096 ]; }; then
            pass "$_l: GET LBA STATUS after UNMAP of 4096 blocks at $B: deallocated ($got)"
        else
            fail "$_l: GET LBA STATUS at $B after UNMAP: '$got' (want $B, >= 4096 blocks, status 1) $(cat /tmp/gls.err)"
        fi
    else
        fail "$_l: sg_unmap: $(cat /tmp/u.err)"
    fi
    dd if=/dev/urandom of=/tmp/d128 bs=512 count=128 2>/dev/null
    if raw 0 /tmp/d128 $(cdb10 0x2A 0 $((B + 1024)) 128); then
        got=$(lba_status $((B + 1024)))
        before=$(lba_status $B)
        if [ "$got" = "$((B + 1024)) 128 0" ] && [ "$before" = "$B 1024 1" ]; then
            pass "$_l: after a 128-block write at $((B + 1024)): '$before' deallocated, then '$got' mapped"
        else
            fail "$_l: GET LBA STATUS after a write: at $B '$before' (want '$B 1024 1'), at $((B + 1024)) '$got' (want '$((B + 1024)) 128 0')"
        fi
    else
        fail "$_l: WRITE(10) at $((B + 1024)): $(short)"
    fi
    expect "$_l: GET LBA STATUS past the last block" "out of range" raw 24 - $(cdb16 0x9E 0x12 $((SIZE_MB * 2048)) 24)
    rm -f /tmp/d128
}

# ---- EXTENDED COPY (LID1) within the LUN (sg_xcopy) -------------------------------------
extended_copy() {
    _l=$1
    # /tmp/w_m (m blocks) is at LBA 2048; copy it to LBA 24576.
    # sg_xcopy wants the SCSI generic node of the disk.
    SG=$(ls "/sys/block/$SD/device/scsi_generic/" 2>/dev/null | head -n 1)
    if out=$(sg_xcopy if="/dev/$SG" of="/dev/$SG" bs=512 skip=2048 seek=24576 count="$m" 2>&1) &&
       range_eq 24576 "$m" 512 /tmp/w_m 0; then
        pass "$_l: sg_xcopy (EXTENDED COPY LID1) of $m blocks from LBA 2048 to 24576 in the same LUN: data equal"
    else
        fail "$_l: sg_xcopy via /dev/$SG: $(echo "$out" | tail -n 3 | tr '\n' ' ')"
    fi
}

# ---- SANITIZE (last: it erases the LUN) -----------------------------------------------
sanitize() {
    _l=$1
    expect "$_l: SANITIZE CRYPTOGRAPHIC ERASE (no backstore encrypts)" "invalid field in cdb" raw 0 - 48 03 00 00 00 00 00 00 00 00
    # OVERWRITE with IMMED (background): a 4-byte pattern over the whole LUN; progress while it runs.
    printf 'W\001T\002' >/tmp/pat
    if out=$(sg_sanitize --quick --early --overwrite --pattern=/tmp/pat "/dev/$SD" 2>&1); then
        seen=""
        i=0
        while [ $i -lt 600 ]; do
            t=$(sg_turs -v "/dev/$SD" 2>&1) && break
            echo "$t" | grep -qi 'sanitize in progress' && seen=yes
            sleep 0.1
            i=$((i + 1))
        done
        # the expected block: the pattern repeated over 512 bytes
        : >/tmp/patblk; j=0; while [ $j -lt 128 ]; do cat /tmp/pat >>/tmp/patblk; j=$((j + 1)); done
        if [ $i -lt 600 ] && range_eq 0 1 512 /tmp/patblk 0 && range_eq $((SIZE_MB * 2048 - 1)) 1 512 /tmp/patblk 0 &&
           range_eq 40000 1 512 /tmp/patblk 0; then
            pass "$_l: SANITIZE OVERWRITE IMMED=1: done in about $((i / 10)) s (progress seen by TEST UNIT READY: ${seen:-no, it was quicker than the polling}), first/middle/last blocks hold the pattern"
        else
            fail "$_l: SANITIZE OVERWRITE IMMED=1: finished=$([ $i -lt 600 ] && echo yes || echo no), blocks: $(dd if=/dev/$SD bs=16 count=1 iflag=direct 2>/dev/null | od -An -tx1 | head -n 1)"
        fi
    else
        fail "$_l: sg_sanitize --overwrite --early: $(echo "$out" | tail -n 2 | tr '\n' ' ')"
    fi
    if out=$(sg_sanitize --quick --wait --block "/dev/$SD" 2>&1) && range_zero 0 2048 512 && range_zero 40000 64 512 &&
       [ "$(lba_status 0)" = "0 $((SIZE_MB * 2048)) 1" ]; then
        pass "$_l: SANITIZE BLOCK ERASE (IMMED=0): reads zeros, GET LBA STATUS: the whole LUN deallocated"
    else
        fail "$_l: SANITIZE BLOCK ERASE: $(echo "$out" | tail -n 2 | tr '\n' ' ') status '$(lba_status 0)'"
    fi
    rm -f /tmp/pat /tmp/patblk
}

# ======================================================================================
section "daemon start"
mkdir -p /tmp/wasmtap
if start_daemon; then
    pass "wasmtap serve running (pid $DPID)"
else
    fail_with_log "wasmtap serve did not start"
    summary
    exit 1
fi

N=0
for spec in "native:wasmtap" "ram:wasmtap/ram" "raw-file:wasmtap/raw-file"; do
    N=$((N + 1))
    label=${spec%%:*}; config=${spec#*:}; name="strict$N"
    section "$label backstore ($config), targetcli-style LUN"
    DISKS_BEFORE=$(our_disks | tr '\n' ' ')
    check "$label: backstore core/user_0/$name (dev_config=$config, ${SIZE_MB} MiB), tcm_loop target, nexus, LUN symlink" \
        mk_on 0 "$name" "$config" "$N"
    if wait_until 30 one_new_disk && SD=$(new_disks) && wait_until 10 test -b "/dev/$SD"; then
        pass "$label: /dev/$SD: $(show_disks | grep "^$SD:")"
        lun_checks "$label" "$name"
    else
        fail_with_log "$label: no new wasmtap /dev/sdX within 30 s (disks: $(show_disks | tr '\n' ';'))"
    fi
    _sd=${SD:-none}
    check "$label: torn down by hand" rm_on 0 "$name" "$N"
    check "$label: sd device and backstore gone" all_of "wait_until 10 test ! -e /sys/block/$_sd" \
        "configfs_clean $name $CFG/loopback/naa.5001405c0ffee1${N}0"
    SD=""
done

# ======================================================================================
section "EXTENDED COPY between LUNs: same HBA reachable, another HBA not"
# up_disk HBA NAME DEV_CONFIG N: mk_on, then the one new wasmtap disk's name
up_disk() {
    DISKS_BEFORE=$(our_disks | tr '\n' ' ')
    mk_on "$@" && wait_until 30 one_new_disk && new_disks
}
XA=""; XB=""; XC=""
if XA=$(up_disk 0 xa wasmtap 7) && XB=$(up_disk 0 xb wasmtap/ram 8) && XC=$(up_disk 1 xc wasmtap 9); then
    pass "three LUNs: xa (native, user_0) /dev/$XA, xb (ram guest, user_0) /dev/$XB, xc (native, user_1) /dev/$XC"
    sgof() { ls "/sys/block/$1/device/scsi_generic/" | head -n 1; }
    dd if=/dev/urandom of=/tmp/xdata bs=512 count=2048 2>/dev/null
    dd if=/tmp/xdata of="/dev/$XA" bs=512 seek=4096 oflag=direct 2>/dev/null
    dd if=/tmp/xdata of="/dev/$XC" bs=512 seek=4096 oflag=direct 2>/dev/null
    SD=$XB
    if out=$(sg_xcopy if="/dev/$(sgof "$XA")" of="/dev/$(sgof "$XB")" bs=512 skip=4096 seek=100 count=2048 2>&1) &&
       range_eq 100 2048 512 /tmp/xdata 0; then
        pass "sg_xcopy of 2048 blocks from xa (native) to xb (ram guest), both on user_0: data equal on xb"
    else
        fail "sg_xcopy xa -> xb: $(echo "$out" | tail -n 3 | tr '\n' ' ')"
    fi
    if out=$(sg_xcopy --on_dst if="/dev/$(sgof "$XC")" of="/dev/$(sgof "$XA")" bs=512 skip=4096 seek=8192 count=64 2>&1); then
        fail "sg_xcopy from xc (user_1) into xa (user_0) succeeded: a copy crossed HBAs"
    elif SD=$XA && range_zero 8192 64 512; then
        pass "sg_xcopy from xc (user_1) into xa (user_0) refused, nothing written: $(echo "$out" | grep -i -m1 -e 'not reachable' -e 'copy aborted' -e 'sense' | tr -s ' ')"
    else
        fail "sg_xcopy from xc into xa failed but xa changed: $(echo "$out" | tail -n 2 | tr '\n' ' ')"
    fi
    rm -f /tmp/xdata
else
    fail_with_log "three LUNs for the copy checks did not come up (disks: $(show_disks | tr '\n' ';'))"
fi
check "xa, xb, xc torn down" all_of "rm_on 0 xa 7" "rm_on 0 xb 8" "rm_on 1 xc 9" \
    "wait_until 10 test ! -e /sys/block/${XA:-none}" "rmdir $CFG/core/user_1"
SD=""

# ======================================================================================
section "shutdown"
check "daemon still running" daemon_alive
errs=$(dlog | grep ' ERROR ')
if [ -z "$errs" ]; then
    pass "the daemon logged no ERROR"
else
    fail "ERROR lines in the daemon log: $(echo "$errs" | sed 's/^[^ ]* *//' | head -n 5 | tr '\n' '|')"
fi
if stop_daemon 10; then
    pass "SIGTERM: daemon exited 0 in $STOP_MS ms"
else
    fail_with_log "SIGTERM: exit '$STOP_RC' after $STOP_MS ms"
fi
check "configfs: loopback fabric and user_0 HBA are empty and removable" \
    all_of "rmdir $CFG/loopback" "rmdir $CFG/core/user_0"
errs=$(dmesg | grep -iE 'critical (target|medium)|tcmu.*(fail|broken|error)' | head -n 10)
if [ -z "$errs" ]; then
    pass "kernel log: no TCMU failures"
else
    fail "kernel log has errors: $(echo "$errs" | tr '\n' '|')"
fi
n=$(wc -l <"$DAEMON_LOG")
echo "note: daemon log ($n lines, last 40):"
dlog | tail -n 40 | indent
note "total test time $(secs "$(ms_since "$T_START")") s guest"
summary
