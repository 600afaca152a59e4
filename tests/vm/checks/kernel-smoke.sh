#!/bin/sh
# Kernel-side smoke check, run inside the VM as /test/run (busybox sh), no wasmtap daemon needed.
# Proves the plumbing the daemon relies on: a TCMU user backstore made through configfs shows up as
# a UIO device with our name and a shared region, a tcm_loop LUN over it makes the kernel scan the
# LUN and put commands on the TCMU ring (the UIO event counter moves and a blocking read of
# /dev/uioN returns), and everything tears down so cleanly that the modules unload.
#
# Nobody answers the ring here, so every command the scan sends expires after attrib/cmd_time_out;
# it is set to SMOKE_CMD_TIMEOUT (default 2 s) to keep the run short.
. /test/lib.sh

NAME=${SMOKE_NAME:-smoke}
DEV_CONFIG="wasmtap/$NAME-cfg"
SIZE=$((64 * 1024 * 1024))
CMD_TIMEOUT=${SMOKE_CMD_TIMEOUT:-2}
CFG=/sys/kernel/config/target
HBA=$CFG/core/user_0
DEV=$HBA/$NAME
TGT_WWN=naa.5001405a5a5a0001
INI_WWN=naa.5001405a5a5a0002
TGT=$CFG/loopback/$TGT_WWN
TPG=$TGT/tpgt_1
LUN=$TPG/lun/lun_0
EXPECTED_UIO_NAME="tcm-user/0/$NAME/$DEV_CONFIG"

elapsed_since() { echo "$(( $(uptime_ms) - $1 ))"; }

# ---- modules and configfs ---------------------------------------------------------
check "target modules loaded (target_core_user, tcm_loop, uio)" \
    test -d /sys/module/target_core_user -a -d /sys/module/tcm_loop -a -d /sys/module/uio
# target/loopback itself appears only once something is made under it (the fabric registers lazily).
check "configfs has target/core" test -d $CFG/core
note "target core: $(cat $CFG/version 2>/dev/null | head -n 1)"

# ---- control: tcm_loop alone (no backstore, so no scan) tears down completely ------------
# This is what makes the quirk seen later attributable to the unanswered scan.
CTL=$CFG/loopback/naa.5001405a5a5a00c0/tpgt_1
control_loop() {
    mkdir -p "$CTL/lun/lun_0" &&
    write_attr "$CTL/nexus" naa.5001405a5a5a00c1 &&
    rmdir "$CTL/lun/lun_0" &&
    write_attr "$CTL/nexus" NULL &&
    [ -z "$(cat "$CTL/nexus" 2>/dev/null)" ] &&
    rmdir "$CTL" && rmdir "${CTL%/tpgt_1}"
}
check "control: tcm_loop target + nexus without a linked LUN is created and removed cleanly" control_loop

# ---- user backstore ---------------------------------------------------------------
make_backstore() {
    mkdir -p "$DEV" &&
    write_attr "$DEV/control" "dev_config=$DEV_CONFIG" &&
    write_attr "$DEV/control" "dev_size=$SIZE" &&
    write_attr "$DEV/enable" 1
}
check "create TCMU user backstore $DEV (dev_size=$SIZE, enable=1)" make_backstore

UIO=""
for n in /sys/class/uio/uio*; do
    [ -f "$n/name" ] || continue
    if [ "$(cat "$n/name")" = "$EXPECTED_UIO_NAME" ]; then UIO=${n##*/}; fi
done
if [ -n "$UIO" ]; then
    pass "UIO device $UIO named $EXPECTED_UIO_NAME"
else
    fail "no /sys/class/uio/uio*/name equal to $EXPECTED_UIO_NAME (have: $(cat /sys/class/uio/uio*/name 2>/dev/null | tr '\n' ' '))"
fi
SYSUIO=/sys/class/uio/${UIO:-none}

MAP0=$(cat "$SYSUIO/maps/map0/size" 2>/dev/null || echo 0)
MAP0_DEC=$((MAP0))
# The region holds a 128-byte mailbox, the command ring (8 MiB by default) and the data area.
if [ "$MAP0_DEC" -gt $((8 * 1024 * 1024)) ]; then
    pass "map0 size $MAP0 ($((MAP0_DEC / 1024 / 1024)) MiB: mailbox + ring + data area)"
else
    fail "map0 size '$MAP0' missing or not larger than the 8 MiB ring"
fi
note "map0 offset $(cat "$SYSUIO/maps/map0/offset" 2>/dev/null), name $(cat "$SYSUIO/maps/map0/name" 2>/dev/null)"
check "/dev/$UIO is a character device" test -c "/dev/$UIO"

note "attrib defaults: cmd_time_out=$(cat $DEV/attrib/cmd_time_out) qfull_time_out=$(cat $DEV/attrib/qfull_time_out) hw_block_size=$(cat $DEV/attrib/hw_block_size) hw_max_sectors=$(cat $DEV/attrib/hw_max_sectors) hw_queue_depth=$(cat $DEV/attrib/hw_queue_depth)"
set_timeout() {
    write_attr "$DEV/attrib/cmd_time_out" "$CMD_TIMEOUT" &&
    [ "$(cat "$DEV/attrib/cmd_time_out")" = "$CMD_TIMEOUT" ]
}
check "attrib/cmd_time_out set to ${CMD_TIMEOUT}s before export" set_timeout

# ---- wait for the ring: a blocking 4-byte read of /dev/uioN ------------------------
EV0=$(cat "$SYSUIO/event" 2>/dev/null || echo -1)
note "UIO event count before the LUN exists: $EV0"
rm -f /run/uio-event /run/uio-reader.err
timeout 60 dd if="/dev/$UIO" of=/run/uio-event bs=4 count=1 2>/run/uio-reader.err &
READER=$!
sleep 2
if kill -0 "$READER" 2>/dev/null; then
    pass "blocking read of /dev/$UIO waits while no LUN exists (no command yet)"
else
    fail "reader of /dev/$UIO returned before any LUN existed: $(cat /run/uio-reader.err)"
fi
busy_out=$(dd if="/dev/$UIO" of=/dev/null bs=4 count=0 2>&1)
busy_rc=$?
if [ "$busy_rc" -ne 0 ] && echo "$busy_out" | grep -qi busy; then
    pass "/dev/$UIO opens exclusively (second open: $(echo "$busy_out" | head -n 1))"
else
    fail "second open of /dev/$UIO did not fail with EBUSY (rc=$busy_rc: $busy_out)"
fi

# ---- tcm_loop target: nexus first, then the LUN ----------------------------------
make_tpg() {
    mkdir -p "$TPG" &&
    write_attr "$TPG/nexus" "$INI_WWN" &&
    [ "$(cat "$TPG/nexus")" = "$INI_WWN" ]
}
check "tcm_loop $TGT_WWN/tpgt_1 with I_T nexus $INI_WWN" make_tpg

HOST=""
for h in /sys/class/scsi_host/host*; do
    [ "$(cat "$h/proc_name" 2>/dev/null)" = tcm_loopback ] && HOST=${h##*/}
done
if [ -n "$HOST" ]; then pass "tcm_loop SCSI host $HOST registered"; else fail "no scsi_host with proc_name tcm_loopback"; fi

check "mkdir $LUN" mkdir "$LUN"
T_LINK=$(uptime_ms)
rm -f /run/link.rc
( ln -s "$DEV" "$LUN/$NAME-port" 2>/run/link.err; echo $? >/run/link.rc ) &

# The link makes tcm_loop scan the LUN; the first command the kernel queues on the ring wakes
# the reader.
if wait_until 30 sh -c "! kill -0 $READER"; then
    wait "$READER"; reader_rc=$?
    if [ "$reader_rc" -eq 0 ] && [ "$(wc -c </run/uio-event)" -eq 4 ]; then
        pass "kernel queued a command on the TCMU ring: read of /dev/$UIO returned event count $(od -An -tu4 /run/uio-event | tr -d ' ') after $(elapsed_since "$T_LINK") ms"
    else
        fail "reader of /dev/$UIO ended rc=$reader_rc with $(wc -c </run/uio-event 2>/dev/null) bytes: $(cat /run/uio-reader.err)"
    fi
else
    fail "no ring event within 30 s of linking the LUN (blocking read of /dev/$UIO still waiting)"
    kill "$READER" 2>/dev/null
fi
EV1=$(cat "$SYSUIO/event" 2>/dev/null || echo -1)
if [ "$EV1" -gt "$EV0" ]; then
    pass "UIO event count moved $EV0 -> $EV1"
else
    fail "UIO event count did not move ($EV0 -> $EV1)"
fi

# Nobody answers: the scan's commands expire after cmd_time_out and the link returns.
if wait_until 120 test -f /run/link.rc; then
    link_rc=$(cat /run/link.rc)
    if [ "$link_rc" = 0 ]; then
        pass "LUN linked; the blocking scan gave up after $(elapsed_since "$T_LINK") ms without an answer"
    else
        fail "ln -s $DEV $LUN/ failed rc=$link_rc: $(cat /run/link.err)"
    fi
else
    fail "linking the LUN still blocked after 120 s"
fi
note "UIO event count after the scan: $(cat "$SYSUIO/event" 2>/dev/null)"

# Without user-space answers no SCSI device (and no /dev/sdX) may appear for the LUN.
sdevs=$(ls /sys/bus/scsi/devices 2>/dev/null | grep -E "^${HOST#host}:" | tr '\n' ' ')
if [ -z "$sdevs" ] && [ -z "$(ls /sys/block 2>/dev/null | grep '^sd')" ]; then
    pass "no SCSI disk appeared for the unanswered LUN"
else
    fail "a SCSI device appeared without any answer on the ring: $sdevs $(ls /sys/block | tr '\n' ' ')"
fi
echo "note: kernel log of the scan:"
dmesg | grep -iE 'tcmu|tcm_loop|target|scsi|uio' | tail -n 25 | sed 's/^/note:   /'

# ---- teardown, in reverse order ---------------------------------------------------
check "unlink the LUN" rm "$LUN/$NAME-port"
# tcm_loop (6.1) quirk: unlinking a LUN whose scan never produced a SCSI device returns early
# ("Unable to locate struct scsi_device") without dropping the TPG's port count, so the nexus can no
# longer be dropped and the tcm_loop session (and module) stay referenced until reboot.
LEAK=0
dmesg | grep -q 'Unable to locate struct scsi_device' && LEAK=1
check "remove $LUN" rmdir "$LUN"
if out=$(write_attr "$TPG/nexus" NULL 2>&1); then
    pass "drop the I_T nexus"
elif [ "$LEAK" = 1 ] && dmesg | grep -q 'active TPG port count'; then
    note "KERNEL QUIRK: nexus drop refused ($out); tcm_loop kept the port count of the unanswered LUN"
else
    fail "drop the I_T nexus: $out"
fi
check "remove tpgt_1" rmdir "$TPG"
check "remove target $TGT_WWN" rmdir "$TGT"
T_DEL=$(uptime_ms)
check "remove backstore $DEV" rmdir "$DEV"
note "backstore removal took $(elapsed_since "$T_DEL") ms"
check "remove HBA user_0" rmdir "$HBA"
check "UIO device $UIO gone" test ! -e "$SYSUIO"
check "tcm_loop SCSI host gone" test ! -e "/sys/class/scsi_host/${HOST:-none}"
check "target_core_user unloads (the TCMU side kept no references)" rmmod target_core_user
if [ "$LEAK" = 0 ]; then
    check "tcm_loop unloads (no leaked nexus)" rmmod tcm_loop
else
    note "KERNEL QUIRK: tcm_loop stays loaded (refcnt $(cat /sys/module/tcm_loop/refcnt 2>/dev/null)): the unanswered LUN leaked its session"
fi

# ---- the client programs of the later suites run in this image ------------------------------
fio_verify() {
    fio --name=verify --filename=/tmp/fio.dat --size=8M --rw=randwrite --bs=4k --ioengine=libaio \
        --iodepth=8 --verify=crc32c --do_verify=1 --output-format=terse >/tmp/fio.out 2>&1 &&
    [ "$(cut -d';' -f5 /tmp/fio.out)" = 0 ]   # terse field 5: error count
}
check "fio (static, libaio engine) writes and verifies crc32c on tmpfs" fio_verify
ext4_image() {
    dd if=/dev/zero of=/tmp/ext4.img bs=1M count=16 2>/dev/null &&
    mkfs.ext4 -q -F /tmp/ext4.img && e2fsck -fn /tmp/ext4.img
}
check "mkfs.ext4 + e2fsck -fn on an image file" ext4_image
sg_tools() {
    for t in sg_inq sg_readcap sg_vpd sg_sync sg_unmap sg_write_same; do "$t" -V || return 1; done
}
check "sg3_utils run (sg_inq sg_readcap sg_vpd sg_sync sg_unmap sg_write_same -V)" sg_tools
cmp_works() {
    head -c 4096 /dev/urandom >/tmp/a && cp /tmp/a /tmp/b && cmp /tmp/a /tmp/b &&
    echo x >>/tmp/b && ! cmp -s /tmp/a /tmp/b
}
check "cmp tells equal from different files" cmp_works

summary
