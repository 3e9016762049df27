#!/usr/bin/env python3
"""ONNX node conformance for `ttfc import` (run by tools/test; needs onnx in .venv).

Writes every node test case of the installed onnx package (onnx.backend.test.case.node.
collect_testcases(): generated locally, nothing is downloaded) to OUT/cases/NAME/ as model.onnx,
input_K.npy and output_K.npy (the first data set), lists them in OUT/cases.txt, and runs them all
in one `ttfc import --conformance` process: import, the reference interpreter and compiled code,
each compared with the expected outputs at the case's rtol/atol. Prints a table per op (passed,
failed, unsupported) and exits 1 when a case of a supported op fails (import succeeded, a run
disagreed or errored). Cases with sequence/optional values or element types TTIR does not have
(uint8, strings...) are counted unsupported without running.

  tools/onnx_conformance.py --ttfc .build/debug/ttfc [--out DIR] [--filter SUBSTRING]
      [--unsupported-markdown FILE]
"""
import argparse
import collections
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np

SUPPORTED_DTYPES = {np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16), np.dtype(np.int64),
                    np.dtype(np.int32), np.dtype(np.int8), np.dtype(np.bool_)}


def end_to_end(ttfc, out):
    """A small MLP built with onnx.helper (dynamic batch, initializers): `ttfc import --params`,
    `ttfc run` against onnxruntime, then `ttfc train --objective softmax_cross_entropy`; the loss
    must fall. And a small CNN with a symbolic batch, compiled and interpreted against
    onnxruntime. Returns a problem or None."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    import onnxruntime
    rng = np.random.default_rng(0)
    arrays = {"fc1.weight": rng.normal(0, 0.3, (8, 16)), "fc1.bias": rng.normal(0, 0.1, 16),
              "fc2.weight": rng.normal(0, 0.3, (3, 16)), "fc2.bias": np.zeros(3)}
    nodes = [helper.make_node("MatMul", ["input:0", "fc1.weight"], ["h0"]), helper.make_node("Add", ["h0", "fc1.bias"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["h2"]),
             helper.make_node("Gemm", ["h2", "fc2.weight", "fc2.bias"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "tiny_mlp", [helper.make_tensor_value_info("input:0", TensorProto.FLOAT, ["batch", 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
                              [numpy_helper.from_array(a.astype(np.float32), n) for n, a in arrays.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    d = os.path.join(out, "end_to_end")
    os.makedirs(d, exist_ok=True)
    if os.path.exists(os.path.join(d, "m.jsonl")):
        os.remove(os.path.join(d, "m.jsonl"))  # ttfc train appends metrics
    onnx.save(model, os.path.join(d, "mlp.onnx"))
    x = rng.normal(size=(256, 8)).astype(np.float32)
    y = ((x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0))
    np.save(os.path.join(d, "x.npy"), x[:5])
    np.savez(os.path.join(d, "data.npz"), input_0=x, labels=y)
    def ttfc_run(*a):
        r = subprocess.run([ttfc, *a], capture_output=True, text=True, cwd=d)
        if r.returncode != 0:
            raise RuntimeError(f"ttfc {' '.join(a)}: {r.stderr.strip()}")
    try:
        ttfc_run("import", "mlp.onnx", "-o", "mlp.ttir", "--params", "mlp.npz")
        ttfc_run("run", "mlp.ttir", "--params", "mlp.npz", "--input", "input_0=x.npy", "--output-dir", "run")
        want = onnxruntime.InferenceSession(os.path.join(d, "mlp.onnx")).run(None, {"input:0": x[:5]})[0]
        got = np.load(os.path.join(d, "run", "result0.npy"))
        if not np.allclose(got, want, rtol=1e-5, atol=1e-6):
            return f"ttfc run differs from onnxruntime by {np.abs(got - want).max()}"
        ttfc_run("train", "mlp.ttir", "--init-params", "mlp.npz", "--data", "data.npz", "--objective", "softmax_cross_entropy",
                 "--labels", "labels", "--steps", "80", "--batch", "32", "--lr", "0.01", "--metrics", "m.jsonl")
    except RuntimeError as e:
        return str(e)
    # A small CNN on NCHW with a symbolic batch (Conv, BatchNormalization, MaxPool, GlobalAveragePool,
    # Flatten, Gemm, Softmax): compiled and interpreted runs against onnxruntime.
    cnn = {"w1": rng.normal(0, 0.3, (8, 3, 3, 3)), "b1": rng.normal(0, 0.1, 8), "g": rng.normal(1, 0.1, 8),
           "be": rng.normal(0, 0.1, 8), "m": rng.normal(0, 0.1, 8), "v": rng.uniform(0.5, 1.5, 8),
           "fc": rng.normal(0, 0.3, (10, 8)), "fcb": np.zeros(10)}
    cnn_nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
                 helper.make_node("BatchNormalization", ["c1", "g", "be", "m", "v"], ["bn"]),
                 helper.make_node("Relu", ["bn"], ["r"]),
                 helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
                 helper.make_node("GlobalAveragePool", ["p"], ["gap"]), helper.make_node("Flatten", ["gap"], ["f"]),
                 helper.make_node("Gemm", ["f", "fc", "fcb"], ["y"], transB=1), helper.make_node("Softmax", ["y"], ["prob"])]
    cnn_graph = helper.make_graph(cnn_nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
                                  [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", 10])],
                                  [numpy_helper.from_array(a.astype(np.float32), n) for n, a in cnn.items()])
    cnn_model = helper.make_model(cnn_graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(cnn_model)
    onnx.save(cnn_model, os.path.join(d, "cnn.onnx"))
    images = rng.normal(size=(5, 3, 16, 16)).astype(np.float32)
    np.save(os.path.join(d, "images.npy"), images)
    want = onnxruntime.InferenceSession(os.path.join(d, "cnn.onnx")).run(None, {"x": images})[0]
    try:
        ttfc_run("import", "cnn.onnx", "-o", "cnn.ttir", "--params", "cnn.npz")
        for mode in ([], ["--interpret"]):
            ttfc_run("run", "cnn.ttir", "--params", "cnn.npz", "--input", "x=images.npy", "--output-dir", "cnn_run", *mode)
            got = np.load(os.path.join(d, "cnn_run", "result0.npy"))
            if not np.allclose(got, want, rtol=1e-5, atol=1e-6):
                return f"the CNN ({'interpreted' if mode else 'compiled'}) differs from onnxruntime by {np.abs(got - want).max()}"
    except RuntimeError as e:
        return str(e)
    losses = [json.loads(l)["loss"] for l in open(os.path.join(d, "m.jsonl")) if '"loss"' in l and "eval" not in l]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    if not (len(losses) == 80 and last < 0.8 * first):
        return f"training the imported model did not reduce the loss ({first:.4f} -> {last:.4f})"
    print(f"end to end: MLP import, run (equal to onnxruntime), train --objective (loss {first:.3f} -> {last:.3f}); "
          "CNN with a symbolic batch compiled and interpreted (equal to onnxruntime)")
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ttfc", required=True)
    parser.add_argument("--out", default="out/onnx-conformance")
    parser.add_argument("--filter", default="")
    parser.add_argument("--unsupported-markdown", help="write the unsupported op list (for IR-specs/onnx.md)")
    parser.add_argument("--verbose", action="store_true", help="print every failing case's detail")
    args = parser.parse_args()

    start = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import onnx
        from onnx import numpy_helper
        from onnx.backend.test.case.node import collect_testcases
        cases = [c for c in collect_testcases() if args.filter in c.name]
    case_dir = os.path.join(args.out, "cases")
    os.makedirs(case_dir, exist_ok=True)
    results = {}
    listed = []
    for case in cases:
        if case.model is None or not case.data_sets:
            continue
        ops = list(dict.fromkeys(n.op_type for n in case.model.graph.node))
        inputs, outputs = case.data_sets[0]
        reason = None

        def as_array(value):
            # Cases give ndarrays, NumPy scalars or TensorProtos (Cast's, with raw data).
            if isinstance(value, onnx.TensorProto):
                try:
                    return numpy_helper.to_array(value)
                except Exception:
                    return value
            return np.asarray(value) if isinstance(value, np.generic) else value
        inputs, outputs = [as_array(v) for v in inputs], [as_array(v) for v in outputs]
        for value in list(inputs) + list(outputs):
            if not isinstance(value, np.ndarray):
                reason = f"a {type(value).__name__} value (only tensors)"
                break
            if value.dtype not in SUPPORTED_DTYPES:
                reason = f"element type {value.dtype}"
                break
        if reason:
            results[case.name] = {"status": "unsupported", "detail": reason, "ops": ops}
            continue
        directory = os.path.join(case_dir, case.name)
        os.makedirs(directory, exist_ok=True)
        onnx.save(case.model, os.path.join(directory, "model.onnx"))
        for k, value in enumerate(inputs):
            np.save(os.path.join(directory, f"input_{k}.npy"), np.array(value, order="C", copy=True))
        for k, value in enumerate(outputs):
            np.save(os.path.join(directory, f"output_{k}.npy"), np.array(value, order="C", copy=True))
        listed.append(f"{case.name} {directory} {case.rtol!r} {case.atol!r}")
    list_path = os.path.join(args.out, "cases.txt")
    with open(list_path, "w") as f:
        f.write("\n".join(listed) + "\n")
    generated = time.time()

    run = subprocess.run([args.ttfc, "import", "--conformance", list_path], capture_output=True, text=True)
    for line in run.stdout.splitlines():
        record = json.loads(line)
        results[record["name"]] = record
    missing = [c.split(" ")[0] for c in listed if c.split(" ")[0] not in results]
    if run.returncode != 0 or missing:
        print(run.stderr[-4000:], file=sys.stderr)
        print(f"onnx conformance: ttfc stopped (status {run.returncode}) with {len(missing)} case(s) not run, "
              f"first {missing[:1]}", file=sys.stderr)
        return 1

    # One row per op: a case counts for its op, or under "(expanded)" for function-expanded graphs.
    table = collections.defaultdict(collections.Counter)
    for name, record in results.items():
        key = "(expanded functions)" if "_expanded" in name else (record["ops"][0] if record["ops"] else "?")
        status = "failed" if record["status"] in ("fail", "error") else record["status"]
        status = "passed" if status == "pass" else status
        table[key][status] += 1
    total = collections.Counter()
    print(f"{'op':32} {'passed':>7} {'failed':>7} {'unsupported':>12}")
    for key in sorted(table):
        row = table[key]
        total.update(row)
        print(f"{key:32} {row['passed']:7} {row['failed']:7} {row['unsupported']:12}")
    print(f"{'total':32} {total['passed']:7} {total['failed']:7} {total['unsupported']:12}")
    print(f"onnx conformance: {len(results)} cases, generated in {generated - start:.0f} s, run in "
          f"{time.time() - generated:.0f} s")
    failures = sorted(n for n, r in results.items() if r["status"] in ("fail", "error"))
    problem = end_to_end(os.path.abspath(args.ttfc), args.out) if not args.filter else None
    for name in failures if args.verbose else failures[:40]:
        print(f"FAIL {name}: {results[name]['detail'][:400]}")
    if problem:
        print(f"FAIL end to end: {problem}")
    if args.unsupported_markdown:
        # Ops with no passing case at all: the list IR-specs/onnx.md gives.
        unsupported = sorted(k for k, row in table.items() if row["passed"] == 0 and not k.startswith("("))
        with open(args.unsupported_markdown, "w") as f:
            f.write(", ".join(f"`{k}`" for k in unsupported) + "\n")
    return 1 if failures or problem else 0


if __name__ == "__main__":
    sys.exit(main())
