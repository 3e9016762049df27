#!/usr/bin/env python3
"""W12 on onnxruntime: the models and inputs ttfc-bench --only W12 times (tools/onnx_real writes
them to out/w12), each in an InferenceSession (CPU provider, every graph optimization, as many
intra-op threads as ttfc's pool), timed as the median of REPETITIONS runs after two warm-ups.
Prints JSON {id: milliseconds}, or {} with a message on stderr when the files are missing.

  .venv/bin/python tools/bench_ort.py REPETITIONS [DIR] [THREADS]
"""
import json
import os
import statistics
import sys
import time

import numpy as np

CASES = [("W12r1", "resnet18.onnx", {"image": "resnet18_image_b1.npy"}),
         ("W12r32", "resnet18.onnx", {"image": "resnet18_image_b32.npy"}),
         ("W12b", "bert.onnx", {"input_ids": "bert_input_ids.npy", "attention_mask": "bert_attention_mask.npy"})]


def main():
    repetitions = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    directory = sys.argv[2] if len(sys.argv) > 2 else "out/w12"
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else (os.cpu_count() or 1)
    files = {f for _, model, inputs in CASES for f in [model, *inputs.values()]}
    missing = sorted(f for f in files if not os.path.exists(os.path.join(directory, f)))
    if missing:
        print(f"W12 skipped on onnxruntime: {missing[0]}... missing from {directory} (tools/onnx_real)", file=sys.stderr)
        print("{}")
        return 0
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    sessions, results = {}, {}
    for case, model, inputs in CASES:
        if model not in sessions:
            sessions[model] = onnxruntime.InferenceSession(os.path.join(directory, model), options, providers=["CPUExecutionProvider"])
        session = sessions[model]
        feeds = {k: np.load(os.path.join(directory, v)) for k, v in inputs.items()}
        for _ in range(2):
            session.run(None, feeds)
        times = []
        for _ in range(repetitions):
            start = time.perf_counter()
            session.run(None, feeds)
            times.append(time.perf_counter() - start)
        results[case] = statistics.median(times) * 1e3
    results["onnxruntime"] = onnxruntime.__version__
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
