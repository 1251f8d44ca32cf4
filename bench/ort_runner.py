#!/usr/bin/env python3
"""Times onnxruntime on one ONNX model the way `ferry bench` times ferry, for bench/run.py.

Usage: ort_runner.py MODEL --inputs FILE.npz [--threads N] [--runs N] [--warmup N]
Run it in a fresh process: prepare_ms is the session creation (load + graph optimizations, all
levels on) in a process that has not touched the model yet. The last stdout line is one JSON
object: {"engine": "onnxruntime", "prepare_ms", "latency_ms": {min, median, p90, mean, max},
"cpu_ms_per_run", "peak_rss_mb", "threads", "runs", ...}. peak_rss_mb is the whole process (Python + numpy included).
"""
import argparse
import json
import sys
import time

import numpy as np


def peak_rss_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--inputs", required=True, help=".npz keyed by input name")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--max-seconds", type=float, default=None,
                    help="budget for the warm-up runs and again for the timed runs (at least one of each)")
    a = ap.parse_args()
    if a.runs < 1 or a.threads < 1 or a.warmup < 0:
        sys.exit("ort_runner: --runs and --threads must be at least 1, --warmup at least 0")

    feeds = dict(np.load(a.inputs))
    import onnxruntime as ort  # imported after numpy so its import time is not in prepare_ms either

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = a.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    started = time.perf_counter()
    sess = ort.InferenceSession(a.model, sess_options=opts, providers=["CPUExecutionProvider"])
    prepare_ms = (time.perf_counter() - started) * 1e3
    print(f"onnxruntime: session created in {prepare_ms:.1f} ms", file=sys.stderr)

    wanted = [i.name for i in sess.get_inputs()]
    missing = [n for n in wanted if n not in feeds]
    if missing:
        sys.exit(f"ort_runner: {a.inputs} has no value for input(s) {missing}")
    feeds = {n: feeds[n] for n in wanted}
    def over(since):
        return a.max_seconds is not None and time.perf_counter() - since >= a.max_seconds

    first_run_ms, warmup_done, started = None, 0, time.perf_counter()
    while warmup_done < a.warmup and not (warmup_done and over(started)):
        t = time.perf_counter()
        sess.run(None, feeds)
        first_run_ms = first_run_ms or (time.perf_counter() - t) * 1e3
        warmup_done += 1
    times = []
    cpu_before, started = time.process_time(), time.perf_counter()
    while len(times) < a.runs and not (times and over(started)):
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t) * 1e3)
        if len(times) % 10 == 0:
            print(f"onnxruntime: {len(times)} / {a.runs} runs", file=sys.stderr)
    cpu_ms_per_run = (time.process_time() - cpu_before) * 1e3 / len(times)  # all threads, spinning included
    t = np.array(times)
    report = {
        "engine": "onnxruntime", "version": ort.__version__, "model": a.model, "threads": a.threads,
        "runs": len(times), "warmup": warmup_done, "prepare_ms": prepare_ms,
        "latency_ms": {"min": float(t.min()), "median": float(np.percentile(t, 50)),
                       "p90": float(np.percentile(t, 90)), "mean": float(t.mean()), "max": float(t.max())},
        "first_run_ms": first_run_ms or times[0], "cpu_ms_per_run": cpu_ms_per_run, "peak_rss_mb": peak_rss_mb(),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
