#!/bin/sh
# End-to-end check of the wasmtap daemon against the real kernel, run inside the VM as /test/run
# (busybox sh). Needs /usr/bin/wasmtap in the image:
#   cargo build --release -p wasmtap
#   tests/vm/run.sh --check tests/vm/checks/daemon-e2e.sh --add target/release/wasmtap:/usr/bin/wasmtap
#
# Order matters (see README, "tcm_loop leak after an unanswered scan"): the daemon is started
# BEFORE a LUN exists, so the kernel's scan of a new tcm_loop LUN is always answered, and it is
# stopped only after the last LUN is deleted (except for the restart test, which stops and
# restarts it while the LUN and its /dev/sdX stay).
#
# Sections: daemon start + `lun create` + /dev/sdX discovery; whole-disk dd pattern; sg3_utils
# (INQUIRY, VPD 00/80/83/B0/B1/B2, READ CAPACITY 16, SYNCHRONIZE CACHE, UNMAP, WRITE SAME with and
# without UNMAP, checked against a model of the disk contents); ext4; fio verify at QD 32; daemon
# SIGTERM + restart (including I/O queued on the ring while no daemon runs); `lun delete` and a
# clean configfs; a short 4096-byte-block pass; daemon stop and module unload.
#
# Env (run.sh --append "KEY=VALUE"): E2E_SIZE_MB (default 256), E2E_SIZE4K_MB (64, 0 skips the
# 4096-byte pass), E2E_FIO_MB (MiB fio writes and verifies, default 128), E2E_FULL_RECHECK (1:
# re-read the whole disk after the sg section), E2E_RUST_LOG (daemon log filter, default info).
. /test/lib.sh

# Debian's busybox-static runs its own applets before PATH (FEATURE_SH_STANDALONE), so a bare
# `cmp` is busybox's (no --ignore-initial, byte-at-a-time). Name GNU cmp by its path.
CMP=/usr/bin/cmp

SIZE_MB=${E2E_SIZE_MB:-256}
SIZE4K_MB=${E2E_SIZE4K_MB:-64}
FIO_MB=${E2E_FIO_MB:-128}
FULL_RECHECK=${E2E_FULL_RECHECK:-1}
DAEMON_LOG=/run/wasmtap-serve.log
CFG=/sys/kernel/config/target
NAME=e2e
NAME4K=e2e4k
PAT=/tmp/pattern        # model of the disk contents (tmpfs; RAM is 1 GiB, the RAM disk holds as much)
MNT=/mnt/e2e
T_START=$(uptime_ms)

. /test/daemon-lib.sh   # start_daemon, stop_daemon, lun_up, lun_down, range_eq, ... (checks/daemon-lib.sh)

# ======================================================================================
section "daemon start"
check "wasmtap binary present and runs (--version: $(wasmtap --version 2>&1 | head -n 1))" wasmtap --version
note "guest memory: $(awk '/MemTotal|MemAvailable/ { printf "%s %d MiB  ", $1, $2 / 1024 }' /proc/meminfo)"
if start_daemon; then
    pass "wasmtap serve started (pid $DPID) before any LUN exists"
else
    fail_with_log "wasmtap serve did not start or exited at once (rc=$(cat /run/daemon.rc 2>/dev/null))"
fi
note "daemon log so far: $(head -n 3 "$DAEMON_LOG" | tail -n 2 | tr '\n' ' ')"

section "lun create (${SIZE_MB} MiB, 512-byte blocks)"
BS=512
BLOCKS=$(( SIZE_MB * 1024 * 1024 / BS ))
lun_up "$NAME" "${SIZE_MB}M"
if [ -z "$SD" ]; then
    # nothing else can run; tidy up what exists so the kernel log stays readable
    wasmtap lun delete "$NAME" >/dev/null 2>&1
    [ -n "$DPID" ] && stop_daemon 10
    daemon_log_tail 60
    summary; exit 1
fi
SYSD=/sys/block/$SD
UIO=""
for n in /sys/class/uio/uio*; do
    case $(cat "$n/name" 2>/dev/null) in "tcm-user/0/$NAME/wasmtap"*) UIO=${n##*/} ;; esac
done
note "backstore: uio=$UIO name='$(cat /sys/class/uio/${UIO:-none}/name 2>/dev/null)' hw_block_size=$(cat $CFG/core/user_0/$NAME/attrib/hw_block_size) hw_max_sectors=$(cat $CFG/core/user_0/$NAME/attrib/hw_max_sectors) nl_reply_supported=$(grep -o 'nl_reply_supported: *-*[0-9]*' $CFG/core/user_0/$NAME/info 2>/dev/null)"
note "sd view: size=$(cat $SYSD/size) sectors, logical_block_size=$(cat $SYSD/queue/logical_block_size), max_hw_sectors_kb=$(cat $SYSD/queue/max_hw_sectors_kb), discard_max_bytes=$(cat $SYSD/queue/discard_max_bytes), discard_granularity=$(cat $SYSD/queue/discard_granularity), write_cache=$(cat $SYSD/queue/write_cache), rotational=$(cat $SYSD/queue/rotational), wwid=$(cat $SYSD/device/wwid 2>/dev/null)"
check "sd capacity is ${SIZE_MB} MiB ($(cat $SYSD/size) x 512-byte sectors)" test "$(cat $SYSD/size)" -eq $(( SIZE_MB * 2048 ))
check "LUN is exported through tcm_loop ($(ls -d $CFG/loopback/naa.*/tpgt_1/lun/lun_0 2>/dev/null | head -n 1))" \
    sh -c "ls $CFG/loopback/naa.*/tpgt_1/lun/lun_0 | grep -q ."

# A backstore of another handler subtype (another TCMU daemon's) must be left alone: after a few
# rescans its /dev/uioN still opens (the open is exclusive) and the daemon logged nothing about it.
# No LUN is made for it, so nothing scans it.
FOREIGN=$CFG/core/user_0/foreign
foreign_ignored() {
    mkdir "$FOREIGN" && write_attr "$FOREIGN/control" "dev_config=otherd/x" &&
    write_attr "$FOREIGN/control" "dev_size=$((16 * 1048576))" && write_attr "$FOREIGN/enable" 1 || return 1
    _u=""
    for n in /sys/class/uio/uio*; do [ "$(cat "$n/name" 2>/dev/null)" = "tcm-user/0/foreign/otherd/x" ] && _u=${n##*/}; done
    [ -n "$_u" ] || { echo "no UIO device for the foreign backstore"; return 1; }
    sleep 2.5
    dd if="/dev/$_u" of=/dev/null bs=4 count=0 2>&1 || { echo "/dev/$_u is held (EBUSY): the daemon took a foreign device"; return 1; }
    ! grep -q 'foreign' "$DAEMON_LOG" || { echo "daemon log mentions it: $(grep foreign "$DAEMON_LOG" | head -n 2)"; return 1; }
}
check "a backstore of another subtype (dev_config=otherd/x) is left alone by the daemon" foreign_ignored
check "remove the foreign backstore" rmdir "$FOREIGN"

# ======================================================================================
section "whole-disk pattern"
t=$(uptime_ms)
if dd if=/dev/urandom of="$PAT" bs=1M count="$SIZE_MB" 2>/dev/null && [ "$(filesize "$PAT")" -eq $(( SIZE_MB * 1048576 )) ]; then
    note "generated a ${SIZE_MB} MiB pseudo-random pattern in tmpfs in $(ms_since "$t") ms"
else
    fail "cannot generate the ${SIZE_MB} MiB pattern in /tmp (memory?)"
fi
t=$(uptime_ms)
if out=$(dd if="$PAT" of="/dev/$SD" bs=1M oflag=direct 2>&1); then
    ms=$(ms_since "$t")
    pass "dd wrote the pattern over the whole disk (${SIZE_MB} MiB, bs=1M, O_DIRECT) in ${ms} ms ($(( SIZE_MB * 1000 / (ms + 1) )) MiB/s)"
else
    fail_with_log "dd of the pattern onto /dev/$SD failed: $(echo "$out" | tail -n 2 | tr '\n' ' ')"
fi
t=$(uptime_ms)
if out=$(dd if="/dev/$SD" bs=1M iflag=direct 2>/dev/null | $CMP - "$PAT" 2>&1); then
    ms=$(ms_since "$t")
    pass "whole disk read back (O_DIRECT) byte-identical to the pattern (cmp, ${ms} ms, $(( SIZE_MB * 1000 / (ms + 1) )) MiB/s)"
else
    fail_with_log "whole-disk read-back differs from the pattern: $out"
fi
note "daemon RSS after filling the disk: $(awk '/VmRSS/ { print $2 " kB" }' /proc/$DPID/status 2>/dev/null), MemAvailable $(awk '/MemAvailable/ { print int($2 / 1024) " MiB" }' /proc/meminfo)"

# ======================================================================================
section "sg3_utils"
# standard INQUIRY
if out=$(sg_inq "/dev/$SD" 2>&1); then
    vend=$(echo "$out" | sed -n 's/^ *Vendor identification: *//p')
    prod=$(echo "$out" | sed -n 's/^ *Product identification: *//p')
    rev=$(echo "$out" | sed -n 's/^ *Product revision level: *//p')
    pdt=$(echo "$out" | grep -o 'PDT=[0-9]*' | head -n 1)
    ver=$(echo "$out" | grep -o 'version=0x[0-9a-f]*' | head -n 1)
    if echo "$vend $prod" | grep -qi wasmtap && [ "$pdt" = PDT=0 ]; then
        pass "sg_inq: vendor '$vend' product '$prod' rev '$rev', $pdt (disk), $ver"
    else
        fail "sg_inq: unexpected identity: vendor '$vend' product '$prod' $pdt: $(echo "$out" | head -n 5 | tr '\n' ' ')"
    fi
else
    fail_with_log "sg_inq /dev/$SD failed: $out"
fi
# version descriptors (strict initiators read them before trusting VPD page B0)
vd=$(sg_inq -d "/dev/$SD" 2>&1 | sed -n '/Version descriptors/,$p')
check "sg_inq -d: version descriptors SAM-5, SPC-4, SBC-3 $(echo "$vd" | tr -s ' \n' ' ')" \
    sh -c "echo '$vd' | grep -q 'SAM-5' && echo '$vd' | grep -q 'SPC-4' && echo '$vd' | grep -q 'SBC-3'"

# VPD 0x00: Supported VPD pages
if vpd_raw 0x00; then
    pages=$(od -An -tx1 -j 4 /tmp/vpd_0x00.bin | tr -s ' \n' ' ' | sed 's/^ //; s/ $//')
    miss=""
    for p in 00 80 83 b0 b1 b2; do echo " $pages " | grep -q " $p " || miss="$miss $p"; done
    if [ -z "$miss" ] && [ "$(byte_at /tmp/vpd_0x00.bin 1)" = 0 ]; then
        pass "sg_vpd -p 0x00: supported pages: $pages"
    else
        fail "sg_vpd -p 0x00: pages '$pages', missing:$miss"
    fi
else
    fail "sg_vpd -p 0x00 failed: $(cat /tmp/vpd_0x00.err)"
fi

# VPD 0x80: Unit serial number (the kernel reads it too: device/vpd_pg80)
if vpd_raw 0x80 && out=$(sg_vpd -p 0x80 "/dev/$SD" 2>&1); then
    serial=$(echo "$out" | sed -n 's/^ *Unit serial number: *//p')
    len=$(be_at /tmp/vpd_0x80.bin 2 2)
    if [ -n "$serial" ] && [ "$(byte_at /tmp/vpd_0x80.bin 1)" = 128 ] && [ "$len" -gt 0 ]; then
        pass "sg_vpd -p 0x80: unit serial number '$serial' ($len bytes)"
    else
        fail "sg_vpd -p 0x80: no serial number: $(echo "$out" | tr '\n' ' ')"
    fi
else
    fail "sg_vpd -p 0x80 failed: $(cat /tmp/vpd_0x80.err) $out"
fi

# VPD 0x83: Device identification: an NAA designator for the LU and a T10 vendor id; the
# kernel derives device/wwid from it. Parsed from the raw page (type, association, identifier).
vpd83_designators() { # one line per designator: TYPE ASSOCIATION CODESET HEX ASCII
    _f=/tmp/vpd_0x83.bin; _end=$(( $(be_at $_f 2 2) + 4 )); _off=4
    while [ $_off -lt $_end ]; do
        _b0=$(byte_at $_f $_off); _b1=$(byte_at $_f $((_off + 1))); _len=$(byte_at $_f $((_off + 3)))
        [ -n "$_len" ] || return 1
        echo "$((_b1 & 15)) $(((_b1 >> 4) & 3)) $((_b0 & 15)) $(od -An -tx1 -j $((_off + 4)) -N "$_len" $_f | tr -d ' \n') $(dd if=$_f bs=1 skip=$((_off + 4)) count="$_len" 2>/dev/null | tr -c ' -~' '.')"
        _off=$((_off + 4 + _len))
    done
}
if vpd_raw 0x83; then
    vpd83_designators >/tmp/vpd83.txt
    naa=$(awk '$1 == 3 && $2 == 0 { print $4; exit }' /tmp/vpd83.txt)
    t10=$(awk '$1 == 1 && $2 == 0 { $1 = $2 = $3 = $4 = ""; sub(/^ +/, ""); print; exit }' /tmp/vpd83.txt)
    wwid=$(cat "$SYSD/device/wwid" 2>/dev/null)
    # 6.1 ranks an NAA 3 (locally assigned) designator no higher than a T10 vendor id and takes
    # the later of equals, so the kernel's wwid may come from either.
    if [ -n "$naa" ] && [ -n "$t10" ] &&
       { [ "$(echo "$wwid" | tr 'A-F' 'a-f')" = "naa.$naa" ] || [ "$wwid" = "t10.$t10" ]; }; then
        pass "sg_vpd -p 0x83: LU designators NAA 0x$naa (NAA $(echo "$naa" | cut -c1)) and T10 '$t10'; kernel wwid '$wwid' is one of them"
    else
        fail "sg_vpd -p 0x83: NAA '$naa' T10 '$t10' wwid '$wwid'; designators (type assoc codeset hex ascii): $(tr '\n' ';' </tmp/vpd83.txt)"
    fi
    sg_vpd -p 0x83 "/dev/$SD" 2>&1 | head -n 12 | indent
else
    fail "sg_vpd -p 0x83 failed: $(cat /tmp/vpd_0x83.err)"
fi

# VPD 0xB0: Block limits. Max transfer = lun create's 1M / 512; unmap limits present (discard).
MAX_SECT=$(cat $CFG/core/user_0/$NAME/attrib/hw_max_sectors)
if vpd_raw 0xb0; then
    b0_len=$(be_at /tmp/vpd_0xb0.bin 2 2)
    b0_maxxfer=$(be_at /tmp/vpd_0xb0.bin 8 4)
    b0_optxfer=$(be_at /tmp/vpd_0xb0.bin 12 4)
    b0_maxunmap=$(be_at /tmp/vpd_0xb0.bin 20 4)
    b0_maxdesc=$(be_at /tmp/vpd_0xb0.bin 24 4)
    b0_gran=$(be_at /tmp/vpd_0xb0.bin 28 4)
    b0_maxws=$(be_at /tmp/vpd_0xb0.bin 36 8)
    desc="page length $b0_len, max transfer $b0_maxxfer blocks, optimal $b0_optxfer, max unmap LBA count $b0_maxunmap, max unmap descriptors $b0_maxdesc, unmap granularity $b0_gran, max write same $b0_maxws"
    if [ "$(byte_at /tmp/vpd_0xb0.bin 1)" = 176 ] && [ "$b0_len" -ge 60 ] && [ "$MAX_SECT" -eq 2048 ] &&
       [ "$b0_maxxfer" -eq "$MAX_SECT" ] &&
       [ "$b0_maxunmap" -gt 0 ] && [ "$b0_maxdesc" -gt 0 ] && [ "$b0_maxws" -gt 0 ]; then
        pass "sg_vpd -p 0xb0: $desc"
    else
        fail "sg_vpd -p 0xb0: expected max transfer 2048 (1M/512; hw_max_sectors $MAX_SECT) and non-zero unmap/write-same limits: $desc"
    fi
else
    fail "sg_vpd -p 0xb0 failed: $(cat /tmp/vpd_0xb0.err)"
fi

# VPD 0xB1: Block device characteristics: non-rotating
if vpd_raw 0xb1; then
    rate=$(be_at /tmp/vpd_0xb1.bin 4 2)
    if [ "$(byte_at /tmp/vpd_0xb1.bin 1)" = 177 ] && [ "$rate" = 1 ]; then
        pass "sg_vpd -p 0xb1: medium rotation rate 1 (non-rotating); kernel rotational=$(cat $SYSD/queue/rotational)"
    else
        fail "sg_vpd -p 0xb1: medium rotation rate '$rate', expected 1"
    fi
else
    fail "sg_vpd -p 0xb1 failed: $(cat /tmp/vpd_0xb1.err)"
fi

# VPD 0xB2: Logical block provisioning: LBPU, LBPWS, LBPWS10, LBPRZ, thin
if vpd_raw 0xb2; then
    f=$(byte_at /tmp/vpd_0xb2.bin 5)
    ptype=$(( $(byte_at /tmp/vpd_0xb2.bin 6) & 7 ))
    desc="LBPU=$(( (f >> 7) & 1 )) LBPWS=$(( (f >> 6) & 1 )) LBPWS10=$(( (f >> 5) & 1 )) LBPRZ=$(( (f >> 2) & 7 )) provisioning type $ptype"
    if [ $(( f & 0xE0 )) -eq $(( 0xE0 )) ] && [ $(( (f >> 2) & 7 )) -eq 1 ] && [ "$ptype" -eq 2 ]; then
        pass "sg_vpd -p 0xb2: $desc (thin)"
    else
        fail "sg_vpd -p 0xb2: expected LBPU/LBPWS/LBPWS10=1, LBPRZ=1, thin: $desc"
    fi
else
    fail "sg_vpd -p 0xb2 failed: $(cat /tmp/vpd_0xb2.err)"
fi
# what sd made of it: discard through UNMAP
pmode=$(cat /sys/block/$SD/device/scsi_disk/*/provisioning_mode 2>/dev/null)
dmax=$(cat $SYSD/queue/discard_max_bytes)
if [ "$pmode" = unmap ] && [ "$dmax" -gt 0 ]; then
    pass "sd uses UNMAP for discard (provisioning_mode=$pmode, discard_max_bytes=$dmax)"
else
    fail "sd provisioning_mode='$pmode' discard_max_bytes=$dmax (expected unmap and > 0)"
fi

# READ CAPACITY (16)
if out=$(sg_readcap --long "/dev/$SD" 2>&1); then
    if echo "$out" | grep -q "Last LBA=$((BLOCKS - 1)) .*Number of logical blocks=$BLOCKS" &&
       echo "$out" | grep -q "Logical block length=$BS bytes" &&
       echo "$out" | grep -q "lbpme=1, lbprz=1"; then
        pass "sg_readcap --long: $(echo "$out" | grep -E 'Number of logical blocks|Logical block length|lbpme' | sed 's/^ *//' | tr '\n' ';')"
    else
        fail "sg_readcap --long: expected $BLOCKS blocks of $BS bytes, lbpme=1 lbprz=1: $(echo "$out" | tr '\n' ' ')"
    fi
else
    fail_with_log "sg_readcap --long failed: $out"
fi

# SYNCHRONIZE CACHE (10) and (16)
check "sg_sync (SYNCHRONIZE CACHE 10)" sg_sync "/dev/$SD"
check "sg_sync --16 (SYNCHRONIZE CACHE 16)" sg_sync --16 "/dev/$SD"

# UNMAP: one aligned 1 MiB range and one unaligned 77-block range in a single command (two
# descriptors); they read back as zeros (LBPRZ) and the blocks around them keep the pattern.
U1=8192; N1=2048; U2=20001; N2=77
if out=$(sg_unmap --force --lba=$U1,$U2 --num=$N1,$N2 "/dev/$SD" 2>&1); then
    pass "sg_unmap two descriptors (lba $U1 x$N1, lba $U2 x$N2)"
else
    fail_with_log "sg_unmap --lba=$U1,$U2 --num=$N1,$N2 failed: $out"
fi
dd if=/dev/zero of=/tmp/z bs=512 count=$N1 2>/dev/null
model_put $U1 $N1 512 /tmp/z; model_put $U2 $N2 512 /tmp/z
check "unmapped ranges read back as zeros" all_of "range_zero $U1 $N1 512" "range_zero $U2 $N2 512"
check "blocks around the unmapped ranges keep the pattern (lba 8000..20199)" \
    all_of "range_eq 8000 12200 512 $PAT"

# WRITE SAME (10) without UNMAP: a random block over 300 blocks
W1=30000; WN1=300
dd if=/dev/urandom of=/tmp/ws.blk bs=512 count=1 2>/dev/null
: >/tmp/ws.exp; i=0; while [ $i -lt $WN1 ]; do cat /tmp/ws.blk >>/tmp/ws.exp; i=$((i + 1)); done
if out=$(sg_write_same --10 --in=/tmp/ws.blk --lba=$W1 --num=$WN1 "/dev/$SD" 2>&1); then
    pass "sg_write_same --10 (random block, lba $W1 x$WN1)"
else
    fail_with_log "sg_write_same --10 --in=blk --lba=$W1 --num=$WN1 failed: $out"
fi
model_put $W1 $WN1 512 /tmp/ws.exp
check "WRITE SAME(10) range holds $WN1 copies of the block, neighbours unchanged" \
    all_of "range_eq $((W1 - 8)) $((WN1 + 16)) 512 $PAT"

# WRITE SAME (16) without UNMAP, 0xff buffer
W2=31001; WN2=1000
if out=$(sg_write_same --16 --ff --lba=$W2 --num=$WN2 "/dev/$SD" 2>&1); then
    pass "sg_write_same --16 --ff (lba $W2 x$WN2)"
else
    fail_with_log "sg_write_same --16 --ff failed: $out"
fi
tr '\000' '\377' </dev/zero | dd of=/tmp/ff bs=512 count=$WN2 iflag=fullblock 2>/dev/null
model_put $W2 $WN2 512 /tmp/ff
check "WRITE SAME(16) range reads back 0xff, neighbours unchanged" \
    all_of "range_eq $((W2 - 8)) $((WN2 + 16)) 512 $PAT"

# WRITE SAME (16) with UNMAP and a zero buffer: aligned 2 MiB; WRITE SAME (10) with UNMAP: unaligned
W3=40960; WN3=4096; W4=50001; WN4=999
if out=$(sg_write_same --16 --unmap --lba=$W3 --num=$WN3 "/dev/$SD" 2>&1); then
    pass "sg_write_same --16 --unmap (zero block, lba $W3 x$WN3)"
else
    fail_with_log "sg_write_same --16 --unmap failed: $out"
fi
if out=$(sg_write_same --10 --unmap --lba=$W4 --num=$WN4 "/dev/$SD" 2>&1); then
    pass "sg_write_same --10 --unmap (zero block, lba $W4 x$WN4)"
else
    fail_with_log "sg_write_same --10 --unmap failed: $out"
fi
dd if=/dev/zero of=/tmp/z bs=512 count=$WN3 2>/dev/null
model_put $W3 $WN3 512 /tmp/z; model_put $W4 $WN4 512 /tmp/z
check "WRITE SAME+UNMAP ranges read back as zeros, neighbours unchanged" \
    all_of "range_eq $((W3 - 8)) $((WN3 + 16)) 512 $PAT" "range_eq $((W4 - 8)) $((WN4 + 16)) 512 $PAT"

# WRITE SAME (16) with UNMAP but a non-zero buffer: the blocks must hold the data (SBC: unmap
# only if the data matches what unmapped blocks read as)
W5=60000; WN5=64
if out=$(sg_write_same --16 --unmap --ff --lba=$W5 --num=$WN5 "/dev/$SD" 2>&1); then
    pass "sg_write_same --16 --unmap --ff accepted (lba $W5 x$WN5)"
else
    fail_with_log "sg_write_same --16 --unmap --ff failed: $out"
fi
model_put $W5 $WN5 512 /tmp/ff
check "WRITE SAME(16)+UNMAP with a 0xff buffer reads back 0xff (not zeros)" \
    all_of "range_eq $((W5 - 8)) $((WN5 + 16)) 512 $PAT"

# Out of range: the last block plus one more must be refused with LBA OUT OF RANGE
if out=$(sg_write_same --16 --ff --lba=$((BLOCKS - 1)) --num=2 "/dev/$SD" 2>&1); then
    fail "sg_write_same past the last LBA succeeded"
elif echo "$out" | grep -qi "out of range"; then
    pass "sg_write_same past the last LBA refused: $(echo "$out" | grep -i 'out of range' | head -n 1 | sed 's/^ *//')"
else
    fail "sg_write_same past the last LBA failed without LBA OUT OF RANGE: $(echo "$out" | tr '\n' ' ')"
fi
check "last block unchanged by the refused WRITE SAME" all_of "range_eq $((BLOCKS - 1)) 1 512 $PAT"

if [ "$FULL_RECHECK" = 1 ]; then
    t=$(uptime_ms)
    if out=$(dd if="/dev/$SD" bs=1M iflag=direct 2>/dev/null | $CMP - "$PAT" 2>&1); then
        pass "whole disk equals the model after the sg commands (no stray writes; $(ms_since "$t") ms)"
    else
        fail_with_log "whole disk differs from the model after the sg commands: $out"
    fi
fi
rm -f "$PAT" /tmp/z /tmp/ff /tmp/ws.exp

# ======================================================================================
section "ext4"
modprobe ext4 2>/dev/null
mkdir -p "$MNT"
t=$(uptime_ms)
check "mkfs.ext4 on /dev/$SD (discards first)" mkfs.ext4 -q -F "/dev/$SD"
note "mkfs.ext4 took $(ms_since "$t") ms"
check "mount ext4" mount -t ext4 "/dev/$SD" "$MNT"
write_files() {
    mkdir -p "$MNT/d1/d2" &&
    for i in 1 2 3 4 5 6; do dd if=/dev/urandom of="$MNT/big$i" bs=1M count=4 2>/dev/null || return 1; done &&
    i=0 && while [ $i -lt 200 ]; do head -c $((i * 37 + 1)) /dev/urandom >"$MNT/d1/d2/small$i" || return 1; i=$((i + 1)); done &&
    (cd "$MNT" && find . -type f | sort | xargs sha256sum) >/tmp/sums &&
    sync
}
check "write 6 x 4 MiB + 200 small files and checksum them" write_files
check "umount, mount again" sh -c "umount $MNT && mount -t ext4 /dev/$SD $MNT"
check "files read back after remount match their checksums ($(wc -l </tmp/sums) files)" sh -c "cd $MNT && sha256sum -c -s /tmp/sums"
if out=$(fstrim -v "$MNT" 2>&1); then
    pass "fstrim on the mounted file system (discard through the fs): $out"
else
    fail "fstrim failed: $out"
fi
check "files intact after fstrim" sh -c "echo 3 >/proc/sys/vm/drop_caches; cd $MNT && sha256sum -c -s /tmp/sums"
check "umount" umount "$MNT"
if out=$(e2fsck -fn "/dev/$SD" 2>&1); then
    pass "e2fsck -fn clean: $(echo "$out" | tail -n 1)"
else
    fail "e2fsck -fn reported problems: $(echo "$out" | tail -n 5 | tr '\n' ' ')"
fi

# ======================================================================================
section "fio verify"
# Random writes of 4k-64k over the whole disk at QD 32 (libaio, O_DIRECT) until FIO_MB are
# written, then fio reads everything back and checks crc32c. Terse field 5 is the error count,
# 6 the KiB read (the verify pass), 47 the KiB written.
t=$(uptime_ms)
fio --name=e2e-verify --filename="/dev/$SD" --ioengine=libaio --direct=1 --iodepth=32 \
    --rw=randwrite --bsrange=4k-64k --size=100% --io_size="${FIO_MB}M" \
    --verify=crc32c --do_verify=1 --verify_fatal=1 --runtime=120 \
    --output-format=normal,terse >/tmp/fio.out 2>&1
frc=$?
ms=$(ms_since "$t")
terse=$(grep '^3;' /tmp/fio.out | tail -n 1)
ferr=$(echo "$terse" | cut -d';' -f5)
fread=$(echo "$terse" | cut -d';' -f6)
fwrite=$(echo "$terse" | cut -d';' -f47)
fwiops=$(echo "$terse" | cut -d';' -f49)
fwlat=$(echo "$terse" | cut -d';' -f81)   # write total latency mean, usec
if [ "$frc" = 0 ] && [ "$ferr" = 0 ] && [ "${fwrite:-0}" -ge $((FIO_MB * 1024)) ] && [ "$fread" = "$fwrite" ] &&
   ! grep -qi 'verify.*fail\|bad magic\|crc32c: verify' /tmp/fio.out; then
    pass "fio randwrite 4k-64k QD32 libaio direct, crc32c verify: ${fwrite} KiB written, ${fread} KiB verified, 0 errors, write ${fwiops} IOPS, ${ms} ms"
else
    fail_with_log "fio rc=$frc err=$ferr written=${fwrite} KiB verified=${fread} KiB: $(grep -iE 'verify|error|err=' /tmp/fio.out | head -n 8 | tr '\n' ' ')"
    sed -n '1,40p' /tmp/fio.out | indent
fi
grep -E 'IOPS=|lat \(usec\): min|clat \(usec\)|IO depths' /tmp/fio.out | head -n 8 | indent
note "fio write mean total latency ${fwlat} usec"

# ======================================================================================
section "daemon restart with the LUN in place"
DPID_OLD=$DPID
if stop_daemon 10; then
    pass "SIGTERM: daemon (pid $DPID_OLD) exited 0 in $STOP_MS ms with the LUN in place"
else
    fail_with_log "SIGTERM: daemon pid $DPID_OLD: exit '$STOP_RC' after $STOP_MS ms (wanted 0 within 10 s)"
fi
check "/dev/$SD and the backstore stay while no daemon runs" \
    test -b "/dev/$SD" -a -e "$SYSD" -a -e "$CFG/core/user_0/$NAME" -a -e "/sys/class/uio/${UIO:-none}"
note "ring after the stop: $(cat $CFG/core/user_0/$NAME/info 2>/dev/null | tr '\n' ' ' | cut -c1-200)"

# I/O issued while nobody serves the ring waits there; the restarted daemon finds the ring not
# empty, resets it (the kernel fails the command as BUSY) and the SCSI layer retries it.
dd if=/dev/urandom of=/tmp/r1 bs=64k count=16 2>/dev/null
( timeout 120 dd if=/tmp/r1 of="/dev/$SD" bs=64k seek=1000 oflag=direct 2>/run/inflight.err; echo $? >/run/inflight.rc ) &
sleep 2
if [ ! -f /run/inflight.rc ]; then
    pass "a write issued while the daemon is down waits (queued on the ring)"
else
    fail "a write issued while the daemon is down finished at once (rc=$(cat /run/inflight.rc)): $(cat /run/inflight.err)"
fi
t=$(uptime_ms)
if start_daemon; then
    pass "wasmtap serve restarted (pid $DPID)"
else
    fail_with_log "wasmtap serve did not restart (rc=$(cat /run/daemon.rc 2>/dev/null))"
fi
if wait_until 60 test -f /run/inflight.rc && [ "$(cat /run/inflight.rc)" = 0 ]; then
    pass "the queued write completed $(ms_since "$t") ms after the restart"
else
    fail_with_log "the write queued while the daemon was down: rc=$(cat /run/inflight.rc 2>/dev/null || echo 'still waiting') $(cat /run/inflight.err 2>/dev/null | tail -n 2 | tr '\n' ' ')"
fi
note "restarted daemon says: $(grep -iE 'reset|not empty|attached' "$DAEMON_LOG" | tail -n 3 | tr '\n' ' ')"
check "queued write reads back" all_of "range_eq 128000 2048 512 /tmp/r1 0"
rb=$(dd if="/dev/$SD" bs=512 skip=$((W2)) count=1 iflag=direct 2>/dev/null | od -An -tx1 | head -n 1 | tr -s ' ')
note "a block written before the restart now reads '$rb' (the native RAM disk lives in the daemon's memory)"
dd if=/dev/urandom of=/tmp/r2 bs=1M count=8 2>/dev/null
t=$(uptime_ms)
check "after restart: dd writes 8 MiB (O_DIRECT) at 100 MiB" dd if=/tmp/r2 of="/dev/$SD" bs=1M seek=100 oflag=direct
check "after restart: 8 MiB read back byte-identical" sh -c "dd if=/dev/$SD bs=1M skip=100 count=8 iflag=direct 2>/dev/null | $CMP - /tmp/r2"
check "after restart: sg_readcap and sg_inq answer" sh -c "sg_readcap --long /dev/$SD | grep -q 'Number of logical blocks=$BLOCKS' && sg_inq /dev/$SD | grep -qi wasmtap"
check "after restart: mkfs.ext4 + e2fsck -fn" sh -c "mkfs.ext4 -q -F /dev/$SD && e2fsck -fn /dev/$SD"
rm -f /tmp/r1 /tmp/r2

# ======================================================================================
section "lun delete"
lun_down "$NAME"
check "daemon still running after the delete" daemon_alive
note "daemon log after the delete: $(tail -n 3 "$DAEMON_LOG" | tr '\n' ' ')"

# ======================================================================================
if [ "$SIZE4K_MB" -gt 0 ]; then
    section "4096-byte blocks (${SIZE4K_MB} MiB)"
    if lun_up "$NAME4K" "${SIZE4K_MB}M" --block-size 4096 --dev-config native/e2e-cfg; then
        BLOCKS4K=$(( SIZE4K_MB * 256 ))
        check "4k: served UIO device is named tcm-user/0/$NAME4K/wasmtap/native/e2e-cfg" \
            sh -c "cat /sys/class/uio/uio*/name | grep -qx 'tcm-user/0/$NAME4K/wasmtap/native/e2e-cfg'"
        check "sd logical_block_size is 4096" test "$(cat /sys/block/$SD/queue/logical_block_size)" = 4096
        if out=$(sg_readcap --long "/dev/$SD" 2>&1) &&
           echo "$out" | grep -q "Last LBA=$((BLOCKS4K - 1)) .*Number of logical blocks=$BLOCKS4K" &&
           echo "$out" | grep -q "Logical block length=4096 bytes"; then
            pass "sg_readcap --long (4k): $(echo "$out" | grep -E 'Number of logical blocks|Logical block length|lbpme' | sed 's/^ *//' | tr '\n' ';')"
        else
            fail "sg_readcap --long (4k): expected $BLOCKS4K blocks of 4096 bytes: $(echo "$out" | tr '\n' ' ')"
        fi
        dd if=/dev/urandom of="$PAT" bs=1M count="$SIZE4K_MB" 2>/dev/null
        t=$(uptime_ms)
        check "4k: dd pattern over the whole disk (O_DIRECT)" dd if="$PAT" of="/dev/$SD" bs=1M oflag=direct
        check "4k: whole disk reads back byte-identical" sh -c "dd if=/dev/$SD bs=1M iflag=direct 2>/dev/null | $CMP - $PAT"
        note "4k write + read-back took $(ms_since "$t") ms"
        check "4k: sg_unmap 16 blocks then they read back as zeros" \
            all_of "sg_unmap --force --lba=100 --num=16 /dev/$SD" "range_zero 100 16 4096" \
                "range_eq 99 1 4096 $PAT" "range_eq 116 1 4096 $PAT"
        rm -f "$PAT"
        lun_down "$NAME4K"
    fi
fi

# ======================================================================================
section "shutdown"
if [ -n "$DPID" ]; then
    DPID_OLD=$DPID
    if stop_daemon 10; then
        pass "SIGTERM after the last LUN: daemon (pid $DPID_OLD) exited 0 in $STOP_MS ms"
    else
        fail_with_log "SIGTERM after the last LUN: exit '$STOP_RC' after $STOP_MS ms"
    fi
fi
# Every LUN's scan was answered, so tcm_loop must come apart completely (cf. the smoke check's quirk).
if dmesg | grep -qE 'Unable to locate struct scsi_device|active TPG port count'; then
    fail "tcm_loop leaked a LUN: $(dmesg | grep -E 'Unable to locate struct scsi_device|active TPG port count' | head -n 2 | tr '\n' ' ')"
fi
# lun delete leaves the shared parents (the loopback fabric dir and the user_0 HBA) for other
# users; they hold the fabric and handler modules, so remove them (both must be empty by now).
check "configfs: loopback fabric and user_0 HBA are empty and removable" \
    all_of "rmdir $CFG/loopback" "rmdir $CFG/core/user_0"
check "tcm_loop unloads (no leaked nexus/LUN)" rmmod tcm_loop
check "target_core_user unloads (no device or ring references left)" rmmod target_core_user
errs=$(dmesg | grep -iE 'I/O error|critical (target|medium)|EXT4-fs error|tcmu.*(fail|broken|error)|blk_update_request' | grep -v 'Unable to load' | head -n 10)
if [ -z "$errs" ]; then
    pass "kernel log: no I/O errors, ext4 errors or TCMU failures"
else
    fail "kernel log has errors: $(echo "$errs" | tr '\n' '|')"
fi
echo "note: kernel messages about the target, TCMU and the disks:"
dmesg | grep -E 'TCMU|tcmu|tcm_loop|TCM_Loop|target|scsi|sd [0-9]|\[sd[a-z]|uio|EXT4' | grep -v 'Unable to load' | tail -n 40 | indent
n=$(wc -l <"$DAEMON_LOG")
echo "note: daemon log ($n lines, $DAEMON_RUNS runs):"
if [ "$n" -le 120 ]; then indent <"$DAEMON_LOG"; else head -n 60 "$DAEMON_LOG" | indent; echo "note:   ..."; tail -n 60 "$DAEMON_LOG" | indent; fi
note "total test time $(secs "$(ms_since "$T_START")") s guest"
summary
