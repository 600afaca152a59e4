#!/usr/bin/env bash
# Build the c-ram backstore: a wasmtap component written in C.
#
#   example-guests/c-ram/build.sh [OUT.wasm]
#
# Needs Debian's clang, lld, wasi-libc and libclang-rt-14-dev-wasm32 (or the
# same from another distribution: clang with a wasm32-wasi sysroot) and cargo
# (to build the wasmtap-guest-c tool of this workspace). Steps:
#   1. wasmtap-guest-c bindings: C bindings of wit/backstore.wit (world
#      `backstore`) into <target>/c-ram/gen/ (generated, never committed)
#   2. the native unit tests of src/store.c (tests/store_test.c), with
#      AddressSanitizer and UBSan
#   3. clang: the core module, <target>/c-ram/c-ram.core.wasm
#   4. wasmtap-guest-c component: the component, by default
#      <target>/wasm-guests/c-ram.wasm (its imports are printed)
# <target> is $CARGO_TARGET_DIR, else the workspace's target/.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
build=$target/c-ram
out=${1:-$target/wasm-guests/c-ram.wasm}
CC=${CC:-clang}

if ! command -v "$CC" >/dev/null || ! command -v wasm-ld >/dev/null ||
    [[ ! -e /usr/include/wasm32-wasi/stdlib.h && -z "${WASI_SYSROOT:-}" ]]; then
    echo "c-ram needs clang, wasm-ld and a wasm32-wasi sysroot:" >&2
    echo "  apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32" >&2
    echo "(or set CC, and WASI_SYSROOT to another sysroot)" >&2
    exit 1
fi
sysroot=()
if [[ -n "${WASI_SYSROOT:-}" ]]; then
    sysroot=(--sysroot="$WASI_SYSROOT")
fi

mkdir -p "$build/gen" "$(dirname "$out")"

# 1. The tool and the bindings.
cargo build --quiet --manifest-path "$root/Cargo.toml" -p wasmtap-guest-c
tool=$target/debug/wasmtap-guest-c
"$tool" bindings --wit "$root/wit" --out "$build/gen" >/dev/null

warnings=(-std=c11 -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion -Werror)

# 2. Native unit tests of the host-independent part.
"$CC" -O1 -g "${warnings[@]}" -fsanitize=address,undefined -fno-sanitize-recover=all \
    -o "$build/store_test" "$here/tests/store_test.c" "$here/src/store.c"
"$build/store_test"

# 3. The core module. -mexec-model=reactor: no main; crt1-reactor's
# `_initialize` runs constructors, and wit-component calls it when the
# component starts. Only malloc and string functions come from wasi-libc, so
# the module imports nothing from WASI (the tool refuses it otherwise).
wasm=(--target=wasm32-wasi "${sysroot[@]}" -O2)
"$CC" "${wasm[@]}" "${warnings[@]}" -I "$build/gen" -c -o "$build/ram.o" "$here/src/ram.c"
"$CC" "${wasm[@]}" "${warnings[@]}" -c -o "$build/store.o" "$here/src/store.c"
# The generated glue is not ours to keep warning-free.
"$CC" "${wasm[@]}" -std=c11 -I "$build/gen" -c -o "$build/backstore.o" "$build/gen/backstore.c"
"$CC" "${wasm[@]}" -mexec-model=reactor -Wl,--strip-debug -o "$build/c-ram.core.wasm" \
    "$build/ram.o" "$build/store.o" "$build/backstore.o" "$build/gen/backstore_component_type.o"

# 4. The component.
"$tool" component "$build/c-ram.core.wasm" -o "$out"
