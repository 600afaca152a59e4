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
