#!/usr/bin/env bash
# The main job on the bundled examples:
#  1. an ONNX CNN at opset 17 converted down to opset 13, checked and summarized;
#  2. an MXNet model recorded from real MXNet 1.9.1 (examples/mxnet) converted to ONNX without
#     MXNet, verified against the original, and run, its output checked against MXNet's own.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --quiet -p ferry-cli
ferry=target/release/ferry
out=target/example
mkdir -p "$out"
echo "== ONNX: opset 17 -> opset 13"
$ferry convert examples/tiny_cnn.onnx -o "$out/tiny_cnn-opset13.onnx" --opset 13
$ferry check "$out/tiny_cnn-opset13.onnx"
$ferry inspect "$out/tiny_cnn-opset13.onnx"
echo
echo "== MXNet -> ONNX, verified, run, and checked against MXNet's recorded output"
mx=examples/mxnet
$ferry convert "$mx/tiny_resnet-symbol.json" -o "$out/tiny_resnet.onnx" --input-shape data=1,3,16,16 --verify
$ferry run "$out/tiny_resnet.onnx" --input data="$mx/input.npy" --output-dir "$out/tiny_resnet-out" \
    --expect "#0=$mx/mxnet_output.npy"
