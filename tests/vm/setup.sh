#!/usr/bin/env bash
# Install everything the real-kernel VM harness needs, idempotently.
#
#   tests/vm/setup.sh            install host packages + fetch/unpack the Debian kernel
#
# Env:
#   WASMTAP_VM_CACHE       cache dir (default $HOME/.cache/wasmtap-vm)
#   WASMTAP_VM_KERNEL_PKG  kernel package to use (default: resolved from linux-image-amd64's Depends)
#
# What it does (each step skipped when already done):
#   1. apt-get install the host tools (qemu, busybox-static, cpio, kmod, e2fsprogs, sg3-utils, a C
#      toolchain and libaio-dev); `apt-get update` only if apt does not know a package or a step fails.
#   2. resolves the real kernel package from linux-image-amd64's Depends, `apt-get download`s it,
#      unpacks it with `dpkg -x` into $WASMTAP_VM_CACHE/kernels/<pkg>/ and runs depmod on that tree.
#   3. builds a small static fio (Debian's fio links ceph/gluster/ICU: ~84 MB of libraries) from
#      Debian's own fio source package, fetched with a private deb-src apt config under the cache.
# On success prints `vm-env: <file>` and writes $WASMTAP_VM_CACHE/vm.env (KPKG, KVER, KERNEL_ROOT,
# VMLINUZ, FIO), which build-initramfs.sh and run.sh read.
set -euo pipefail

CACHE="${WASMTAP_VM_CACHE:-$HOME/.cache/wasmtap-vm}"
log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (apt-get install / download)"
command -v apt-get >/dev/null || die "apt-get not found: this harness needs a Debian-like host"

export DEBIAN_FRONTEND=noninteractive

# host package -> a file it must provide (checked to decide whether to install)
declare -A NEED=(
  [qemu-system-x86]=/usr/bin/qemu-system-x86_64
  [busybox-static]=/bin/busybox
  [cpio]=/usr/bin/cpio
  [kmod]=/usr/bin/kmod
  [e2fsprogs]=/usr/sbin/mkfs.ext4
  [fio]=/usr/bin/fio  # for the host; the VM gets a static build (below)
  [sg3-utils]=/usr/bin/sg_inq
  [diffutils]=/usr/bin/cmp
  [gzip]=/bin/gzip
  [coreutils]=/usr/bin/timeout
  [libc-bin]=/usr/bin/ldd
  [gcc]=/usr/bin/gcc
  [make]=/usr/bin/make
  [libc6-dev]=/usr/lib/x86_64-linux-gnu/libc.a
  [zlib1g-dev]=/usr/lib/x86_64-linux-gnu/libz.a
  [libaio-dev]=/usr/lib/x86_64-linux-gnu/libaio.a
  [binutils]=/usr/bin/strip
)

UPDATED=0
apt_update() {
  if [[ $UPDATED -eq 0 ]]; then
    log "apt-get update"
    apt-get update -qq || die "apt-get update failed"
    UPDATED=1
  fi
}

missing=()
for pkg in "${!NEED[@]}"; do
  [[ -e ${NEED[$pkg]} ]] || missing+=("$pkg")
done
# busybox (non-static) conflicts with busybox-static; the static one is what we want.
if [[ -e /bin/busybox ]] && ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'; then
  missing+=(busybox-static)
fi

if ((${#missing[@]})); then
  log "installing: ${missing[*]}"
  # Update first only if apt does not know one of the packages (no lists yet, or stale).
  for pkg in "${missing[@]}"; do
    cand=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
    if [[ -z $cand || $cand == "(none)" ]]; then apt_update; break; fi
  done
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    apt_update
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
      || die "apt-get install failed for: ${missing[*]}"
  fi
  for pkg in "${!NEED[@]}"; do
    [[ -e ${NEED[$pkg]} ]] || die "package $pkg installed but ${NEED[$pkg]} is still missing"
  done
else
  log "host packages already present"
fi

# ---- kernel -----------------------------------------------------------------
mkdir -p "$CACHE/debs" "$CACHE/kernels"

resolve_kernel_pkg() {
  # The real image package is the linux-image-* in the metapackage's Depends.
  apt-cache depends linux-image-amd64 2>/dev/null \
    | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}

KPKG_PINNED="${WASMTAP_VM_KERNEL_PKG:-}"
pick_kernel() {
  KPKG=$KPKG_PINNED
  if [[ -z $KPKG ]]; then
    KPKG=$(resolve_kernel_pkg)
    if [[ -z $KPKG ]]; then apt_update; KPKG=$(resolve_kernel_pkg); fi
    [[ -n $KPKG ]] || die "cannot resolve the kernel package from linux-image-amd64's Depends (apt-cache depends linux-image-amd64)"
  fi
  KDIR="$CACHE/kernels/$KPKG"
}
download_kernel() {
  rm -f "$CACHE/debs/${KPKG}_"*.deb
  (cd "$CACHE/debs" && apt-get download -qq "$KPKG" >/dev/null 2>&1)
}

pick_kernel
if [[ ! -f $KDIR/.complete ]]; then
  log "downloading $KPKG"
  if ! download_kernel; then
    # Stale package lists: the mirror may have moved on to a newer kernel ABI. Update, re-resolve.
    apt_update
    pick_kernel
  fi
fi
if [[ -f $KDIR/.complete ]]; then
  log "kernel $KPKG already unpacked in $KDIR"
else
  ls "$CACHE/debs/${KPKG}_"*.deb >/dev/null 2>&1 || download_kernel \
    || die "apt-get download $KPKG failed"
  deb=$(ls "$CACHE/debs/${KPKG}_"*.deb 2>/dev/null | head -n1)
  [[ -n $deb ]] || die "downloaded package for $KPKG not found in $CACHE/debs"
  log "unpacking $(basename "$deb")"
  rm -rf "$KDIR.tmp"
  dpkg -x "$deb" "$KDIR.tmp" || die "dpkg -x $deb failed"
  # keep only what the VM uses: the kernel image and the modules
  rm -rf "$KDIR.tmp/usr"
  depmod -b "$KDIR.tmp" "$(ls "$KDIR.tmp/lib/modules" | head -n1)" || die "depmod on $KDIR.tmp failed"
  rm -rf "$KDIR"
  mv "$KDIR.tmp" "$KDIR"
  touch "$KDIR/.complete"
  rm -f "$deb"   # the unpacked tree is the cache; the .deb is not needed again
  for old in "$CACHE/kernels"/*; do   # older kernels: ~400 MB each
    [[ $old == "$KDIR" ]] || { log "removing old kernel $(basename "$old")"; rm -rf "$old"; }
  done
fi

vmlinuz=$(ls "$KDIR"/boot/vmlinuz-* 2>/dev/null | head -n1)
[[ -n $vmlinuz ]] || die "no boot/vmlinuz-* in $KDIR"
kver=${vmlinuz##*/vmlinuz-}
[[ -d $KDIR/lib/modules/$kver ]] || die "no lib/modules/$kver in $KDIR"

# ---- fio (static, minimal engines) ------------------------------------------
# A private apt configuration with deb-src entries derived from the system's own sources, so the
# system's apt setup is left untouched.
SRC="$CACHE/src-apt"
APT_SRC_OPTS=(-o "Dir::Etc::SourceList=$SRC/sources.list" -o "Dir::Etc::SourceParts=$SRC/parts"
  -o "Dir::State::Lists=$SRC/lists" -o "APT::Sandbox::User=root")

src_apt_config() {
  mkdir -p "$SRC/parts" "$SRC/lists/partial" "$SRC/dl"
  : >"$SRC/sources.list"
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    sed -E 's/^Types:.*/Types: deb-src/' "$f" >"$SRC/parts/$(basename "$f")"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    sed -nE 's/^deb([[:space:]])/deb-src\1/p' "$f" >>"$SRC/sources.list"
  done
  if [[ ! -s $SRC/sources.list ]] && ! ls "$SRC/parts"/*.sources >/dev/null 2>&1; then
    die "no apt sources found in /etc/apt to derive deb-src entries from"
  fi
}

FIO_STAMP="$CACHE/fio/.complete"
if [[ -f $FIO_STAMP && -x $CACHE/fio/fio ]]; then
  log "fio already built: $CACHE/fio/fio"
else
  src_apt_config
  dl() { (cd "$SRC/dl" && apt-get "${APT_SRC_OPTS[@]}" source --download-only -qq fio >/dev/null 2>&1); }
  rm -f "$SRC/dl"/fio_*
  if ! dl; then
    log "apt-get update (private deb-src lists)"
    apt-get "${APT_SRC_OPTS[@]}" update -qq >/dev/null 2>&1 || die "apt-get update of deb-src lists failed (see $SRC)"
    dl || die "apt-get source --download-only fio failed"
  fi
  orig=$(ls "$SRC/dl"/fio_*.orig.tar.* 2>/dev/null | grep -v '\.asc$' | head -n1)
  [[ -n $orig ]] || die "fio source tarball not found in $SRC/dl"
  log "building static fio from $(basename "$orig")"
  rm -rf "$CACHE/fio-build" && mkdir -p "$CACHE/fio-build"
  tar -xf "$orig" -C "$CACHE/fio-build" || die "cannot unpack $orig"
  fsrc=$(ls -d "$CACHE/fio-build"/fio-* | head -n1)
  (
    cd "$fsrc"
    ./configure --build-static --disable-native --disable-numa --disable-rdma --disable-rados \
      --disable-rbd --disable-http --disable-gfapi --disable-libnfs --disable-pmem --disable-xnvme \
      --disable-libzbc --disable-tcmalloc --disable-dfs --disable-lex >../configure.log 2>&1 \
      || { echo "fio configure failed: see $CACHE/fio-build/configure.log" >&2; exit 1; }
    grep -q '^Linux AIO support *yes' ../configure.log \
      || { echo "fio configure found no libaio (libaio-dev missing?)" >&2; exit 1; }
    make -j"$(nproc)" fio >../make.log 2>&1 \
      || { echo "fio build failed: see $CACHE/fio-build/make.log" >&2; exit 1; }
  ) || die "building fio failed"
  mkdir -p "$CACHE/fio"
  strip -o "$CACHE/fio/fio" "$fsrc/fio"
  "$CACHE/fio/fio" --enghelp 2>/dev/null | grep -qw libaio || die "built fio lacks the libaio engine"
  rm -rf "$CACHE/fio-build" "$SRC/dl"/fio_*
  touch "$FIO_STAMP"
fi

cat >"$CACHE/vm.env.tmp" <<ENV
KPKG=$KPKG
KVER=$kver
KERNEL_ROOT=$KDIR
VMLINUZ=$vmlinuz
FIO=$CACHE/fio/fio
ENV
mv "$CACHE/vm.env.tmp" "$CACHE/vm.env"
log "kernel: $KPKG ($kver)"
echo "vm-env: $CACHE/vm.env"
