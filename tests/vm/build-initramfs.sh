#!/usr/bin/env bash
# Assemble the test VM's initramfs (gzip'd newc cpio).
#
#   tests/vm/build-initramfs.sh --check SCRIPT [--add SRC:DEST]... [--bin PROG]...
#                               [--modules "m1 m2"] [--output FILE]
#
#   --check SCRIPT   test script, installed as /test/run (run by /init); checks/lib.sh and
#                    checks/daemon-lib.sh go next to it as /test/lib.sh, /test/daemon-lib.sh. Required.
#   --add SRC:DEST   extra file or directory, copied to DEST in the image; dynamically linked ELF
#                    files get their shared libraries too. Repeatable.
#                    e.g. --add target/release/wasmtap:/usr/bin/wasmtap
#   --bin PROG       extra host program (name in PATH or a path) to copy with its libraries,
#                    at the same path. Repeatable.
#   --modules LIST   extra kernel modules to include AND load at boot (names, space separated).
#   --output FILE    default: target/vm/initramfs.cpio.gz (in the repository)
#
# Env: WASMTAP_VM_CACHE (default $HOME/.cache/wasmtap-vm) must hold vm.env from setup.sh.
# Prints `initramfs: FILE (SIZE)` on success.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE="${WASMTAP_VM_CACHE:-$HOME/.cache/wasmtap-vm}"

log() { printf 'build-initramfs: %s\n' "$*" >&2; }
die() { printf 'build-initramfs: error: %s\n' "$*" >&2; exit 1; }

CHECK=""
OUTPUT="$REPO/target/vm/initramfs.cpio.gz"
ADDS=()
EXTRA_BINS=()
EXTRA_MODS=()
while (($#)); do
  case $1 in
    --check) CHECK=${2:?--check needs a file}; shift 2 ;;
    --add) ADDS+=("${2:?--add needs SRC:DEST}"); shift 2 ;;
    --bin) EXTRA_BINS+=("${2:?--bin needs a program}"); shift 2 ;;
    --modules) read -r -a m <<<"${2:?--modules needs a list}"; EXTRA_MODS+=("${m[@]}"); shift 2 ;;
    --output|-o) OUTPUT=${2:?--output needs a file}; shift 2 ;;
    -h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[[ -n $CHECK ]] || die "--check SCRIPT is required"
[[ -f $CHECK ]] || die "check script not found: $CHECK"

[[ -f $CACHE/vm.env ]] || die "$CACHE/vm.env missing: run tests/vm/setup.sh first"
# shellcheck disable=SC1091
. "$CACHE/vm.env"
MODDIR="$KERNEL_ROOT/lib/modules/$KVER"
[[ -d $MODDIR ]] || die "kernel modules not found: $MODDIR (run tests/vm/setup.sh)"
for tool in busybox cpio gzip ldd modinfo modprobe; do
  command -v "$tool" >/dev/null || die "'$tool' not found (run tests/vm/setup.sh)"
done
BUSYBOX=$(command -v busybox)
file_is_static() { ! ldd "$1" >/dev/null 2>&1; }
file_is_static "$BUSYBOX" || die "$BUSYBOX is not static: install busybox-static"

# Modules loaded at boot (their dependencies come along), plus ones loaded on demand.
BOOT_MODS=(configfs uio target_core_mod target_core_user tcm_loop sd_mod sg "${EXTRA_MODS[@]}")
ONDEMAND_MODS=(crct10dif_generic crct10dif_pclmul crc64_rocksoft_generic crc32c_generic
  crc32c_intel ext4 target_core_file target_core_iblock target_core_pscsi)

# Client programs: command name -> where it goes in the image.
CLIENTS=(mkfs.ext4 mke2fs e2fsck sg_inq sg_readcap sg_vpd sg_sync sg_unmap sg_write_same sg_turs
  sg_requests sg_raw sg_compare_and_write sg_verify sg_get_lba_status sg_sanitize sg_xcopy cmp)

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/wasmtap-initramfs.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,etc/target,proc,sys,dev,tmp,run,test,root}
mkdir -p "$STAGE/lib/x86_64-linux-gnu" "$STAGE/usr/lib/x86_64-linux-gnu"

# ---- busybox ----------------------------------------------------------------
cp "$BUSYBOX" "$STAGE/bin/busybox"
while read -r applet; do
  [[ -n $applet && $applet != bin/busybox ]] || continue
  mkdir -p "$STAGE/$(dirname "$applet")"
  ln -sf /bin/busybox "$STAGE/$applet"
done < <("$BUSYBOX" --list-full)
[[ -e $STAGE/bin/sh ]] || die "busybox has no sh applet"

# ---- ELF files with their libraries ------------------------------------------
copy_libs() { # copy_libs FILE: the dynamic loader and every library ldd lists, at the same paths
  local f=$1 line lib
  file_is_static "$f" && return 0
  while read -r line; do
    lib=""
    if [[ $line =~ =\>\ (/[^ ]+) ]]; then lib=${BASH_REMATCH[1]}
    elif [[ $line =~ ^(/[^ ]+)\ \( ]]; then lib=${BASH_REMATCH[1]}
    elif [[ $line =~ =\>\ not\ found ]]; then die "$f needs a library that is not installed: $line"
    fi
    [[ -n $lib && ! -e $STAGE$lib ]] || continue
    mkdir -p "$STAGE$(dirname "$lib")"
    cp -L "$lib" "$STAGE$lib"
  done < <(ldd "$f")
}

install_file() { # install_file SRC DEST
  local src=$1 dest=$2
  [[ -e $src ]] || die "file to add not found: $src"
  if [[ -d $src ]]; then
    mkdir -p "$STAGE$dest"
    cp -a "$src/." "$STAGE$dest/"
    local f
    while IFS= read -r -d '' f; do
      if [[ $(head -c4 "$f" | od -An -c | tr -d ' ') == 177ELF ]]; then copy_libs "$f"; fi
    done < <(find "$src" -type f -print0)
    return
  fi
  mkdir -p "$STAGE$(dirname "$dest")"
  rm -f "$STAGE$dest"           # may be a busybox applet symlink
  cp -L "$src" "$STAGE$dest"
  if [[ $(head -c4 "$src" | od -An -c | tr -d ' ') == 177ELF ]]; then copy_libs "$src"; fi
}

for prog in "${CLIENTS[@]}" "${EXTRA_BINS[@]}"; do
  path=$(command -v "$prog" || true)
  [[ -n $path ]] || die "client program '$prog' not found (run tests/vm/setup.sh)"
  case $path in /*) ;; *) die "'$prog' is not a program ($path)";; esac
  install_file "$path" "$path"
done
# a static fio built by setup.sh (Debian's own fio needs ~84 MB of ceph/gluster/ICU libraries)
[[ -x ${FIO:-} ]] || die "static fio missing (${FIO:-unset}): run tests/vm/setup.sh"
install_file "$FIO" /usr/bin/fio

# ---- kernel modules -----------------------------------------------------------
declare -A SEEN=()
mod_file() { modinfo -b "$KERNEL_ROOT" -k "$KVER" -F filename "$1" 2>/dev/null | head -n1; }
add_module() { # add_module NAME: the module, its depends and its soft dependencies
  local name=$1 file dep tok res
  file=$(mod_file "$name")
  [[ -n $file ]] || die "kernel module '$name' not found in $MODDIR"
  [[ $file == /* ]] || return 0               # built in
  [[ -z ${SEEN[$file]:-} ]] || return 0
  SEEN[$file]=1
  mkdir -p "$STAGE/$(dirname "${file#"$KERNEL_ROOT"}")"
  cp "$file" "$STAGE${file#"$KERNEL_ROOT"}"
  for dep in $(modinfo -F depends "$file" | tr ',' ' '); do add_module "$dep"; done
  for tok in $(modinfo -F softdep "$file"); do
    case $tok in pre:|post:) continue ;; esac
    for res in $(modprobe -d "$KERNEL_ROOT" -S "$KVER" -R "$tok" 2>/dev/null); do add_module "$res"; done
  done
}
for m in "${BOOT_MODS[@]}" "${ONDEMAND_MODS[@]}"; do add_module "$m"; done
cp "$MODDIR"/modules.order "$MODDIR"/modules.builtin* "$STAGE/lib/modules/$KVER/"
printf '%s\n' "${BOOT_MODS[@]}" >"$STAGE/etc/vm-modules"

# ---- init, test, extras ---------------------------------------------------------
install -m 0755 "$HERE/init" "$STAGE/init"
install -m 0755 "$CHECK" "$STAGE/test/run"
install -m 0644 "$HERE/checks/lib.sh" "$STAGE/test/lib.sh"
install -m 0644 "$HERE/checks/daemon-lib.sh" "$STAGE/test/daemon-lib.sh"
for spec in "${ADDS[@]}"; do
  [[ $spec == *:/* ]] || die "--add wants SRC:/absolute/DEST, got '$spec'"
  install_file "${spec%%:/*}" "/${spec#*:/}"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$STAGE/etc/passwd"
printf 'root:x:0:\n' >"$STAGE/etc/group"
: >"$STAGE/etc/mtab"

mkdir -p "$(dirname "$OUTPUT")"
(cd "$STAGE" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -6 -n) \
  >"$OUTPUT.tmp"
mv "$OUTPUT.tmp" "$OUTPUT"
log "modules: ${#SEEN[@]}, stage $(du -sh "$STAGE" | cut -f1)"
echo "initramfs: $OUTPUT ($(du -h "$OUTPUT" | cut -f1))"
