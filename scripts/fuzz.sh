#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/: `scripts/fuzz.sh TARGET SECONDS` runs one target,
# `scripts/fuzz.sh all SECONDS` runs each target for SECONDS in turn. Needs cargo-fuzz
# (`cargo install cargo-fuzz`); on stable Rust, nightly flags are enabled with RUSTC_BOOTSTRAP=1.
# Seeds the corpora from the test data first (fuzz/seed.sh). Crashes land in fuzz/artifacts/TARGET.
# Env: FUZZ_JOBS (default 1), FUZZ_RSS_MB (default 2048), FUZZ_SANITIZER (default none; address
# is slower but catches memory errors in unsafe code).
set -eu
root="$(cd "$(dirname "$0")/.." && pwd)"
targets="onnx_load mxnet_symbol mxnet_params npy run_small"
t="${1:-}"; secs="${2:-}"
if [ -z "$t" ] || [ -z "$secs" ]; then
    echo "usage: scripts/fuzz.sh TARGET|all SECONDS   (targets: $targets)" >&2
    exit 2
fi
[ "$t" = all ] && run="$targets" || run="$t"
cd "$root/fuzz"
./seed.sh >/dev/null
export RUSTC_BOOTSTRAP=1
san="${FUZZ_SANITIZER:-none}"
cargo fuzz build -O -a -s "$san"
# One job runs in-process (output on the terminal); more fork workers that log to fuzz-N.log.
jobs=""; [ "${FUZZ_JOBS:-1}" -gt 1 ] && jobs="-jobs=$FUZZ_JOBS -workers=$FUZZ_JOBS"
for x in $run; do
    echo "== $x for ${secs}s"
    cargo fuzz run -O -a -s "$san" "$x" "corpus/$x" -- \
        -max_total_time="$secs" $jobs \
        -rss_limit_mb="${FUZZ_RSS_MB:-2048}" -timeout=10 -max_len=1048576 -print_final_stats=1
done
