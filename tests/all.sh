#!/usr/bin/env bash
# The whole test suite, as the README documents it and CI runs it.
# Screenshots of the browser test land in target/artifacts/browser/, VM serial
# logs in target/vm-logs/.
#
#   tests/all.sh            everything
#   WASMTAP_SKIP_VM=1 ...   skip the real-kernel VM suite (local use only;
#                           refused under CI=true)
#   FUZZ_SECS=N             seconds per fuzz target (default 30)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
# What rust-toolchain.toml lists (Rust 1.95, clippy, rustfmt, the wasm32-wasip2
# target); rustup does not add a listed target to a toolchain that is already
# installed without it. A no-op when everything is there.
rustup toolchain install

step "rustfmt"
cargo fmt --all --check

step "clippy (warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

step "unit, property and integration tests"
cargo test --workspace

step "web UI in a real browser (Debian's chromium driven by playwright-core)"
if [[ ! -x /usr/bin/chromium ]]; then
    if [[ $(id -u) -eq 0 ]]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "the browser test needs chromium: run as root, or apt-get install chromium" >&2
        exit 1
    fi
fi
cargo build -p wasmtap
tests/browser/run.sh

step "C backstore (example-guests/c-ram, Debian's clang and wasi-libc) through wasmtap check"
c_packages=(clang lld wasi-libc libclang-rt-14-dev-wasm32)
c_missing=()
for p in "${c_packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || c_missing+=("$p")
done
if [[ ${#c_missing[@]} -gt 0 ]]; then
    if [[ $(id -u) -eq 0 ]]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${c_missing[@]}" >/dev/null
    else
        echo "the C backstore needs ${c_missing[*]}: run as root, or apt-get install them" >&2
        exit 1
    fi
fi
example-guests/c-ram/build.sh         # also runs its native unit tests
cargo build -p wasmtap                 # (built for the browser step already)
for block_size in 512 4096; do
    "${CARGO_TARGET_DIR:-target}/debug/wasmtap" check --block-size "$block_size" \
        "${CARGO_TARGET_DIR:-target}/wasm-guests/c-ram.wasm"
done

step "fuzz targets (short runs)"
tests/fuzz.sh "${FUZZ_SECS:-30}"

if [[ -n "${WASMTAP_SKIP_VM:-}" ]]; then
    if [[ "${CI:-}" == "true" ]]; then
        echo "WASMTAP_SKIP_VM is not allowed in CI" >&2
        exit 1
    fi
    step "real-kernel VM suite SKIPPED (WASMTAP_SKIP_VM set)"
elif [[ -x tests/vm/ci.sh ]]; then
    step "real-kernel VM suite"
    tests/vm/ci.sh
else
    echo "tests/vm/ci.sh missing" >&2
    exit 1
fi

step "all suites passed"
