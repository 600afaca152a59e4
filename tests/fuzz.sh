#!/usr/bin/env bash
# Run every cargo-fuzz target for a short time (default 30 s each), seeding
# the ring target's corpus from simulator-built rings. Installs cargo-fuzz if
# it is missing. Any crash fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-30}"

if ! rustup toolchain list | grep -q '^nightly'; then
    # cargo-fuzz needs nightly for the sanitizer flags.
    rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

cargo run -q -p wasmtap-ring --features test-utils --example ring_fuzz_seeds -- fuzz/corpus/ring_entries
cargo run -q -p wasmtap-scsi --example scsi_fuzz_seeds -- fuzz/corpus/scsi_cdb

targets=$(cd fuzz && cargo +nightly fuzz list)
for t in $targets; do
    echo "fuzz: $t for ${secs}s"
    mkdir -p "fuzz/corpus/$t"
    (cd fuzz && cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -rss_limit_mb=2048 2>&1 | tail -n 3)
    # cargo fuzz exits non-zero on a crash; pipefail propagates it.
done
