#!/usr/bin/env python3
"""Writes the registered operator names of the installed MXNet with the op each resolves to
(aliases share one registry entry): crates/ferry-mxnet/data/mxnet-ops.tsv, read by the support
doc generator (crates/ferry/tests/support_doc.rs).

usage: MXNET_VENV/bin/python tests/mxnet/list_mxnet_ops.py [OUT]
"""
import ctypes
import os
import sys

import mxnet as mx
from mxnet.base import _LIB, check_call, c_str, py_str

HERE = os.path.dirname(os.path.abspath(__file__))


def canonical(name):
    handle = ctypes.c_void_p()
    check_call(_LIB.NNGetOpHandle(c_str(name), ctypes.byref(handle)))
    real = ctypes.c_char_p()
    desc = ctypes.c_char_p()
    num_args = ctypes.c_uint()
    arg_names = ctypes.POINTER(ctypes.c_char_p)()
    arg_types = ctypes.POINTER(ctypes.c_char_p)()
    arg_descs = ctypes.POINTER(ctypes.c_char_p)()
    ret_type = ctypes.c_char_p()
    check_call(_LIB.NNGetOpInfo(handle, ctypes.byref(real), ctypes.byref(desc), ctypes.byref(num_args),
                                ctypes.byref(arg_names), ctypes.byref(arg_types), ctypes.byref(arg_descs),
                                ctypes.byref(ret_type)))
    return py_str(real.value)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "crates", "ferry-mxnet", "data",
                                                             "mxnet-ops.tsv")
    names = sorted(mx.operator.get_all_registered_operators())
    lines = [f"# Operators registered in MXNet {mx.__version__} (pip mxnet=={mx.__version__}, CPU build),",
             "# from mx.operator.get_all_registered_operators(); second column: the op the name resolves to",
             "# (NNGetOpHandle + NNGetOpInfo), different from the first for aliases.",
             "# Written by tests/mxnet/list_mxnet_ops.py."]
    lines += [f"{n}\t{canonical(n)}" for n in names]
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{len(names)} ops -> {out}")


if __name__ == "__main__":
    main()
