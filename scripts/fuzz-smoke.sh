#!/usr/bin/env bash
# A short, repeatable fuzz smoke run for the test command: every cargo-fuzz target replays its seed
# corpus (the test data) and then tries a fixed number of mutations with a fixed seed, so the run
# is the same on every machine. Long runs are scripts/fuzz.sh. Installs cargo-fuzz under
# target/tools when it is missing. Env: FUZZ_SMOKE_RUNS (default 2000 mutations per target).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$root/target/tools/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --quiet --locked --root "$root/target/tools" cargo-fuzz
fi
export RUSTC_BOOTSTRAP=1
cd "$root/fuzz"
./seed.sh >/dev/null
cargo fuzz build -O -a -s none 2>&1 | grep -vE "^\s*(Compiling|Finished|Building)" || true
status=0
for t in onnx_load mxnet_symbol mxnet_params npy run_small; do
    log="$root/target/fuzz-smoke-$t.log"
    # A copy of the corpus, so the smoke run never grows the real one.
    work="$root/target/fuzz-smoke-corpus/$t"
    rm -rf "$work"; mkdir -p "$work"; cp -r corpus/"$t"/. "$work"/
    # -runs counts the corpus replay too.
    runs=$(( $(ls "$work" | wc -l) + ${FUZZ_SMOKE_RUNS:-2000} ))
    if cargo fuzz run -O -a -s none "$t" "$work" -- -seed=1 -runs="$runs" \
        -rss_limit_mb=2048 -timeout=10 -max_len=1048576 >"$log" 2>&1; then
        echo "fuzz smoke $t: ok ($(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1)s, corpus replay included)"
    else
        echo "fuzz smoke $t: FAILED (see $log and fuzz/artifacts/$t)"; status=1
    fi
done
exit $status
