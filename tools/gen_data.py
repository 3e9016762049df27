#!/usr/bin/env python3
"""Synthetic training data for the examples, written as .npz (train and eval splits).

  python3 tools/gen_data.py OUT_DIR [--examples N] [--seed S]

writes OUT_DIR/classification_{train,eval}.npz for examples/mlp.ttir (x: f32[N, 784] pixel-like
values in 0..255 from 10 class prototypes plus noise, y: i32[N]), OUT_DIR/logreg_{train,eval}.npz
for examples/logreg.ttir (x: f32[N, 16], y: f32[N] from a logistic teacher), and
OUT_DIR/ctr_{train,eval}.npz for examples/wide_deep.ttir (wide: f32[N, 8], deep: f32[N, 32],
click: f32[N] from a teacher with a linear and a nonlinear part, about 25% positives), and
OUT_DIR/ctr_sparse_{train,eval}.npz for examples/deepfm.ttir and examples/wide_deep_sparse.ttir
(user, ad, site, cross: i64[N] ids with Zipfian popularity, interests: i64[N, 4] multi-hot ids
padded with -1, dense: f32[N, 4], click: f32[N] from latent user and ad vectors)."""
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

    # Sparse CTR: Zipfian users and ads with latent vectors; the click logit is their agreement,
    # a site bias, the overlap of the user's interests with the ad's topic, and dense features.
    users, ads, sites, topics = 2000, 500, 50, 40
    def zipf(count, size, s=1.1):
        weights = 1.0 / np.arange(1, count + 1) ** s
        return rng.choice(count, size=size, p=weights / weights.sum())
    user = zipf(users, n)
    ad = zipf(ads, n)
    site = rng.integers(0, sites, n)
    user_vec = rng.normal(0, 1, (users, 4))
    ad_vec = rng.normal(0, 1, (ads, 4))
    ad_topic = rng.integers(0, topics, ads)
    user_topics = rng.integers(0, topics, (users, 4))
    user_topic_count = rng.integers(1, 5, users)
    interests = np.where(np.arange(4)[None, :] < user_topic_count[user][:, None], user_topics[user], -1)
    overlap = (interests == ad_topic[ad][:, None]).any(axis=1)
    site_bias = rng.normal(0, 0.5, sites)
    dense = rng.normal(0, 1, (n, 4)).astype(np.float32)
    logit = (user_vec[user] * ad_vec[ad]).sum(axis=1) + site_bias[site] + 1.5 * overlap + dense @ np.array([0.5, -0.5, 0.3, 0.0]) - 1.0
    click = (rng.uniform(0, 1, n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    # Ids as a feature-hashing front end would give them: distinct per field, sparse and unbounded.
    split("ctr_sparse", {"user": (user * 7919 + 1_000_000).astype(np.int64), "ad": (ad * 104729 + 2_000_000_000).astype(np.int64),
                         "site": (site + 5_000_000_000).astype(np.int64),
                         "cross": ((user * ads + ad) * 31 + 9_000_000_000).astype(np.int64),
                         "interests": np.where(interests >= 0, interests + 7_000_000_000, -1).astype(np.int64),
                         "dense": dense, "click": click})
    print(f"wrote classification, logreg, ctr and ctr_sparse splits ({n} examples each) to {args.out}")


if __name__ == "__main__":
    main()
