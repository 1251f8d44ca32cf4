#!/usr/bin/env bash
# The main job on the bundled example: convert an opset-17 CNN to opset 13, check it, summarize it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --quiet -p ferry-cli
mkdir -p target/example
target/release/ferry convert examples/tiny_cnn.onnx -o target/example/tiny_cnn-opset13.onnx --opset 13
target/release/ferry check target/example/tiny_cnn-opset13.onnx
target/release/ferry inspect target/example/tiny_cnn-opset13.onnx
