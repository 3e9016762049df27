#!/usr/bin/env python3
"""Image data for the vision examples, written as .npz in ttfc's training format.

  python3 tools/digits_data.py digits OUT_DIR [--test-fraction 0.2] [--seed 0]
      scikit-learn's bundled handwritten digits (sklearn.datasets.load_digits: 1,797 8x8
      grey images, 10 classes, read from the installed package, no download) as
      OUT_DIR/digits_train.npz and OUT_DIR/digits_test.npz: x: f32[N, 8, 8, 1] scaled from
      0..16 to 0..1, y: i32[N]. The split is fixed: a stratified permutation drawn with
      NumPy's default_rng(seed) (seed 0: 1,438 train, 359 test), the same on every machine.

  python3 tools/digits_data.py cifar OUT_DIR [--examples 4096] [--seed 0]
      a CIFAR-format synthetic set for speed work: OUT_DIR/cifar_synth_{train,test}.npz with
      x: f32[N, 32, 32, 3] in 0..1 (ten class templates of smooth colour blobs plus noise, so a
      model can learn it) and y: i32[N]; 80% train.
"""
import argparse
import os

import numpy as np


def stratified_split(y, test_fraction, seed):
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        cut = int(round(len(idx) * test_fraction))
        test.extend(idx[:cut])
        train.extend(idx[cut:])
    train = np.array(train)[rng.permutation(len(train))]
    test = np.array(test)[rng.permutation(len(test))]
    return train, test


def digits(out, test_fraction, seed):
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images.astype(np.float32) / 16.0).reshape(-1, 8, 8, 1)
    y = data.target.astype(np.int32)
    train, test = stratified_split(y, test_fraction, seed)
    np.savez(os.path.join(out, "digits_train.npz"), x=x[train], y=y[train])
    np.savez(os.path.join(out, "digits_test.npz"), x=x[test], y=y[test])
    print(f"digits: {len(train)} train, {len(test)} test examples in {out}")


def cifar(out, examples, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32) / 31.0
    templates = np.zeros((10, 32, 32, 3), np.float32)
    for c in range(10):
        for _ in range(3):
            cy, cx = rng.uniform(0, 1, 2)
            width = rng.uniform(0.1, 0.3)
            colour = rng.uniform(0, 1, 3)
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width**2))
            templates[c] += blob[:, :, None] * colour
    templates /= templates.max()
    y = rng.integers(0, 10, examples).astype(np.int32)
    shift = rng.integers(-2, 3, (examples, 2))
    x = np.empty((examples, 32, 32, 3), np.float32)
    for i in range(examples):
        x[i] = np.roll(templates[y[i]], tuple(shift[i]), axis=(0, 1))
    x = np.clip(x + rng.normal(0, 0.15, x.shape).astype(np.float32), 0, 1).astype(np.float32)
    cut = examples * 4 // 5
    np.savez(os.path.join(out, "cifar_synth_train.npz"), x=x[:cut], y=y[:cut])
    np.savez(os.path.join(out, "cifar_synth_test.npz"), x=x[cut:], y=y[cut:])
    print(f"cifar: {cut} train, {examples - cut} test examples in {out}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["digits", "cifar"])
    parser.add_argument("out")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--examples", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.kind == "digits":
        digits(args.out, args.test_fraction, args.seed)
    else:
        cifar(args.out, args.examples, args.seed)


if __name__ == "__main__":
    main()
