#!/usr/bin/env python3
"""Checkpoints against the reference safetensors reader (run by tools/test with .venv's Python).

Trains a linear model two plain-SGD steps with `ttfc train --checkpoint`, reads the checkpoint
with the `safetensors` package (the format's reference implementation), and checks the tensors'
names, dtypes and shapes, the metadata, and the values against the same two steps in NumPy.
Usage: check_safetensors.py --ttfc PATH/TO/ttfc
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

MODEL = """module @lin {
  param @w : f32[3, 1] = zeros
  param @b : f32[1] = zeros
  func @loss(%x: f32[B, 3], %y: f32[B]) -> f32[] {
    %z = matmul %x, @w : f32[B, 1]
    %zb = add %z, @b : f32[B, 1]
    %r = reshape %zb : f32[B]
    %d = sub %r, %y : f32[B]
    %s = mul %d, %d : f32[B]
    %m = reduce_mean %s : f32[]
    return %m
  }
}
"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ttfc", required=True)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    x = rng.normal(size=(8, 3)).astype(np.float32)
    y = rng.normal(size=8).astype(np.float32)
    w = rng.normal(size=(3, 1)).astype(np.float32)
    b = np.array([0.5], np.float32)
    lr, steps = 0.1, 2
    with tempfile.TemporaryDirectory() as tmp:
        open(os.path.join(tmp, "lin.ttir"), "w").write(MODEL)
        np.savez(os.path.join(tmp, "data.npz"), x=x, y=y)
        np.savez(os.path.join(tmp, "init.npz"), w=w, b=b)
        ckpt = os.path.join(tmp, "ckpt")
        run = subprocess.run([args.ttfc, "train", os.path.join(tmp, "lin.ttir"), "--data", os.path.join(tmp, "data.npz"),
                              "--init-params", os.path.join(tmp, "init.npz"), "--batch", "8", "--steps", str(steps),
                              "--optimizer", "sgd", "--lr", str(lr), "--no-shuffle", "--checkpoint", ckpt],
                             capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"ttfc train failed:\n{run.stderr}")
        path = os.path.join(ckpt, "checkpoint.safetensors")
        tensors = load_file(path)
        with safe_open(path, "np") as f:
            metadata = f.metadata()
    # The same steps in NumPy (float64): loss = mean((x w + b - y)^2).
    w64, b64 = w.astype(np.float64), b.astype(np.float64)
    for _ in range(steps):
        d = (x @ w64)[:, 0] + b64[0] - y
        w64 = w64 - lr * (2 / len(y)) * (x.T @ d)[:, None]
        b64 = b64 - lr * (2 / len(y)) * np.array([d.sum()])
    problems = []
    for name, expected in (("w", w64), ("b", b64)):
        got = tensors.get(name)
        if got is None:
            problems.append(f"tensor '{name}' missing (have {sorted(tensors)})")
        elif got.dtype != np.float32 or got.shape != expected.shape:
            problems.append(f"'{name}': {got.dtype}{got.shape}, expected float32{expected.shape}")
        elif not np.allclose(got, expected, rtol=1e-5, atol=1e-6):
            problems.append(f"'{name}': {got.ravel()} vs NumPy {expected.ravel()}")
    if metadata.get("step") != str(steps):
        problems.append(f"metadata step {metadata.get('step')!r}, expected '{steps}'")
    if not str(metadata.get("format", "")).startswith("ttfc-checkpoint"):
        problems.append(f"metadata format {metadata.get('format')!r}")
    if problems:
        sys.exit("safetensors check failed:\n  " + "\n  ".join(problems))
    print(f"safetensors: the reference reader loads the checkpoint (tensors {sorted(tensors)}, step {metadata['step']}); "
          f"values match NumPy's {steps} SGD steps within 1e-5")


if __name__ == "__main__":
    main()
