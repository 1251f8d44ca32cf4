#!/usr/bin/env bash
# Seeds fuzz/corpus/<target> from the test data (not committed; fuzz/corpus is ignored).
# Env: ONNX_DATA (default target/onnx-backend of this checkout), MXNET_DATA (default ../shared/mxnet beside it).
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
onnx="${ONNX_DATA:-$here/../target/onnx-backend}"
mx="${MXNET_DATA:-$here/../../shared/mxnet}"
c="$here/corpus"
mkdir -p "$c"/{onnx_load,run_small,mxnet_symbol,mxnet_params,npy}
copy() { # SRC DEST_DIR: name by content hash so reruns don't duplicate
    local h; h=$(sha1sum "$1" | cut -c1-16); cp -n "$1" "$2/$h" 2>/dev/null || true
}
if [ -d "$onnx" ]; then
    for f in "$onnx"/*/*/model.onnx; do
        copy "$f" "$c/onnx_load"
        # run_small: only small models (≤ 64 KiB) so runs stay fast
        if [ "$(stat -c %s "$f")" -le 65536 ]; then copy "$f" "$c/run_small"; fi
    done
    # .pb inputs feed the npy target (it also decodes TensorProto)
    find "$onnx" -path '*test_data_set_0/input_*.pb' -size -64k | head -300 | while read -r f; do copy "$f" "$c/npy"; done
fi
if [ -d "$mx" ]; then
    find "$mx" -name '*.json' -size -256k | while read -r f; do copy "$f" "$c/mxnet_symbol"; done
    find "$mx" -name '*.params' -size -1024k | while read -r f; do copy "$f" "$c/mxnet_params"; done
    find "$mx" -name '*.npy' -size -64k | head -400 | while read -r f; do copy "$f" "$c/npy"; done
fi
for d in "$c"/*; do echo "$(basename "$d"): $(ls "$d" | wc -l) files"; done
