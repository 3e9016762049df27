#!/usr/bin/env python3
"""Synthetic training data for the examples, written as .npz (train and eval splits).

  python3 tools/gen_data.py OUT_DIR [--examples N] [--seed S]

writes OUT_DIR/classification_{train,eval}.npz for examples/mlp.ttir (x: f32[N, 784] pixel-like
values in 0..255 from 10 class prototypes plus noise, y: i32[N]), OUT_DIR/logreg_{train,eval}.npz
for examples/logreg.ttir (x: f32[N, 16], y: f32[N] from a logistic teacher), and
OUT_DIR/ctr_{train,eval}.npz for examples/wide_deep.ttir (wide: f32[N, 8], deep: f32[N, 32],
click: f32[N] from a teacher with a linear and a nonlinear part, about 25% positives)."""
import argparse
import os

import numpy as np


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--examples", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    n = args.examples

    def split(name, arrays):
        cut = n * 4 // 5
        np.savez(os.path.join(args.out, f"{name}_train.npz"), **{k: v[:cut] for k, v in arrays.items()})
        np.savez(os.path.join(args.out, f"{name}_eval.npz"), **{k: v[cut:] for k, v in arrays.items()})

    prototypes = rng.uniform(0, 255, (10, 784))
    y = rng.integers(0, 10, n).astype(np.int32)
    x = np.clip(prototypes[y] * 0.2 + rng.normal(0, 70, (n, 784)) + 90, 0, 255).astype(np.float32)
    split("classification", {"x": x, "y": y})

    w = rng.normal(0, 1, 16)
    xl = rng.normal(0, 1, (n, 16)).astype(np.float32)
    p = 1 / (1 + np.exp(-(xl @ w)))
    split("logreg", {"x": xl, "y": (rng.uniform(0, 1, n) < p).astype(np.float32)})

    wide = rng.normal(0, 1, (n, 8)).astype(np.float32)
    deep = rng.normal(0, 1, (n, 32)).astype(np.float32)
    logit = wide @ rng.normal(0, 0.7, 8) + np.tanh(deep @ rng.normal(0, 0.5, (32, 8))) @ rng.normal(0, 1.2, 8) - 1.3
    click = (rng.uniform(0, 1, n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    split("ctr", {"wide": wide, "deep": deep, "click": click})
    print(f"wrote classification, logreg and ctr splits ({n} examples each) to {args.out}")


if __name__ == "__main__":
    main()
