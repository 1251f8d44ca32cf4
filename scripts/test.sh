#!/usr/bin/env bash
# The whole test suite, from a fresh machine: reference tools, build, Rust tests, ONNX round trips.
# Usage: scripts/test.sh            (CI runs exactly this)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "== reference tools (Python venv under target/venv: onnx, onnxruntime; test-only)"
scripts/setup-venv.sh

echo "== build (release, once)"
cargo build --release --workspace --quiet

echo "== format and lints"
cargo fmt --all --check
cargo clippy --release --workspace --all-targets --quiet -- -D warnings

PY=target/venv/bin/python
echo "== ONNX backend test data (generated once, cached under target/onnx-backend)"
$PY tests/onnx_conformance/gen_cases.py

echo "== Rust tests (unit, CLI, hostile files, reference-runtime conformance)"
cargo test --release --workspace --quiet 2>&1 | tee target/rust-tests.log | grep -E "^(test result|failures|error|thread|---- |[0-9]+ passed, [0-9]+ failed|REGRESSION)" || true
if grep -qE "^test result: FAILED|^error" target/rust-tests.log; then
    echo "Rust tests failed (see target/rust-tests.log)"; exit 1
fi

echo "== ONNX backend data round trip (same format, default opset)"
$PY tests/onnx_conformance/roundtrip.py -q
echo "== ONNX backend data round trip (--opset 13)"
$PY tests/onnx_conformance/roundtrip.py -q --opset 13

