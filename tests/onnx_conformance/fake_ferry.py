#!/usr/bin/env python3
"""Stand-in for `ferry convert`, for developing/testing the round-trip harness.

    fake_ferry.py convert IN.onnx -o OUT.onnx [--opset N]

Without --opset the model is copied byte for byte; with --opset it is run
through onnx.version_converter. Exit codes follow ferry's contract: 0 success,
1 refusal (message on stderr), 2 usage.

Testing hooks (environment variables, regexes matched against the input path):
  FAKE_FERRY_PANIC    exit 101 like a Rust panic
  FAKE_FERRY_REFUSE   exit 1 with a refusal message
  FAKE_FERRY_CORRUPT  write a model that fails onnx.checker
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys


def _match(var: str, path: str) -> bool:
    pat = os.environ.get(var)
    return bool(pat) and re.search(pat, path) is not None


def main() -> int:
    ap = argparse.ArgumentParser(prog="fake_ferry")
    sub = ap.add_subparsers(dest="cmd", required=True)
    conv = sub.add_parser("convert")
    conv.add_argument("input")
    conv.add_argument("-o", "--output", required=True)
    conv.add_argument("--opset", type=int)
    args = ap.parse_args()  # exits 2 on usage errors

    if _match("FAKE_FERRY_PANIC", args.input):
        print("thread 'main' panicked at src/fake.rs:1:1:\nfake panic", file=sys.stderr)
        return 101
    if _match("FAKE_FERRY_REFUSE", args.input):
        print("error: refusing to convert (fake)", file=sys.stderr)
        return 1

    if args.opset is None and not _match("FAKE_FERRY_CORRUPT", args.input):
        shutil.copyfile(args.input, args.output)
        return 0

    try:
        import onnx
    except ImportError:  # plain `python3 fake_ferry.py`: use the repo's venv
        here = os.path.dirname(os.path.abspath(__file__))
        venv_py = os.path.join(here, "..", "..", "target", "venv", "bin", "python")
        if os.path.exists(venv_py) and "FAKE_FERRY_REEXEC" not in os.environ:
            os.environ["FAKE_FERRY_REEXEC"] = "1"
            os.execv(venv_py, [venv_py, os.path.abspath(__file__)] + sys.argv[1:])
        raise

    model = onnx.load(args.input)
    if args.opset is not None:
        try:
            from onnx import version_converter

            model = version_converter.convert_version(model, args.opset)
        except Exception as e:  # noqa: BLE001
            print(f"error: cannot convert to opset {args.opset}: {str(e).splitlines()[0]}", file=sys.stderr)
            return 1
    if _match("FAKE_FERRY_CORRUPT", args.input):
        model.graph.node[0].op_type = "NoSuchOp"
    onnx.save(model, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
