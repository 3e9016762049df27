#!/usr/bin/env python3
"""W12 (not in CI, not run by tools/test): real models through `ttfc import` against onnxruntime.

Exports torchvision's ResNet-18 and a transformers BERT encoder (random weights, no download) to
ONNX, imports each with `ttfc import --params`, checks `ttfc run` against onnxruntime on the same
input, then times inference of both (the median of --repetitions runs after a warm-up; ttfc's
time is its `run` command's, so it includes the compile: use --repetitions to see the steady
state through `ttfc run --dim` or ttfc-bench once W12 is added there).

Needs torch, torchvision and transformers in .venv (not installed by tools/setup: they are large):
  .venv/bin/pip install torch torchvision transformers --index-url https://download.pytorch.org/whl/cpu
Shapes are exported static (--batch, --seq) because ONNX `Shape` of a symbolic dimension does not
fold at import (IR-specs/onnx.md).

  tools/onnx_export.py --ttfc .build/release/ttfc [--models resnet18,bert] [--batch 8] [--seq 128]
      [--repetitions 5] [--out out/w12]
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np


def export_resnet18(path, batch):
    import torch
    import torchvision
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(batch, 3, 224, 224)
    torch.onnx.export(model, (x,), path, input_names=["image"], output_names=["logits"], opset_version=17)
    return {"image": x.numpy()}


def export_bert(path, batch, seq):
    import torch
    from transformers import BertConfig, BertModel
    config = BertConfig(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024)
    model = BertModel(config).eval()
    ids = torch.randint(0, config.vocab_size, (batch, seq))
    mask = torch.ones(batch, seq, dtype=torch.int64)
    torch.onnx.export(model, (ids, mask), path, input_names=["input_ids", "attention_mask"],
                      output_names=["last_hidden_state", "pooler_output"], opset_version=17)
    return {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ttfc", required=True)
    parser.add_argument("--models", default="resnet18,bert")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--out", default="out/w12")
    args = parser.parse_args()
    try:
        import onnxruntime
        import torch  # noqa: F401
    except ImportError as error:
        print(f"tools/onnx_export.py: {error}; see the install line in this script's docstring", file=sys.stderr)
        return 2
    ttfc = os.path.abspath(args.ttfc)
    os.makedirs(args.out, exist_ok=True)
    for name in args.models.split(","):
        d = os.path.join(args.out, name)
        os.makedirs(d, exist_ok=True)
        onnx_path = os.path.join(d, "model.onnx")
        inputs = export_resnet18(onnx_path, args.batch) if name == "resnet18" else export_bert(onnx_path, args.batch, args.seq)
        imported = subprocess.run([ttfc, "import", onnx_path, "-o", os.path.join(d, "model.ttir"), "--params",
                                   os.path.join(d, "params.npz")], capture_output=True, text=True)
        if imported.returncode != 0:
            print(f"{name}: ttfc import failed:\n{imported.stderr}")
            continue
        # TTIR names: the importer's sanitized input names (IR-specs/onnx.md).
        run_args = []
        for k, (input_name, value) in enumerate(inputs.items()):
            np.save(os.path.join(d, f"input_{k}.npy"), value)
            run_args += ["--input", f"{input_name}={os.path.join(d, f'input_{k}.npy')}"]
        session = onnxruntime.InferenceSession(onnx_path)
        want = session.run(None, inputs)
        ttfc_times, ort_times = [], []
        for _ in range(args.repetitions + 1):
            start = time.perf_counter()
            ran = subprocess.run([ttfc, "run", os.path.join(d, "model.ttir"), "--params", os.path.join(d, "params.npz"),
                                  "--output-dir", os.path.join(d, "ttfc_out"), *run_args], capture_output=True, text=True)
            ttfc_times.append(time.perf_counter() - start)
            if ran.returncode != 0:
                print(f"{name}: ttfc run failed:\n{ran.stderr}")
                break
            start = time.perf_counter()
            session.run(None, inputs)
            ort_times.append(time.perf_counter() - start)
        else:
            got = np.load(os.path.join(d, "ttfc_out", "result0.npy"))
            difference = float(np.abs(got - want[0]).max())
            t, o = statistics.median(ttfc_times[1:]), statistics.median(ort_times[1:])
            print(f"W12 {name}: max |ttfc - onnxruntime| = {difference:.3g}; ttfc run {t * 1e3:.1f} ms "
                  f"(process, compile included), onnxruntime {o * 1e3:.1f} ms, ratio {t / o:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
