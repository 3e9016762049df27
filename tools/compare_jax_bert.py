#!/usr/bin/env python3
"""BERT-tiny training against JAX: examples/bert_tiny.ttir (dropout off) and the same encoder
written here in jax.numpy, from the same initial weights on the same variable-length batches,
trained with Adam by `ttfc train --sequence-lengths lengths` and by JAX.

  tools/compare_jax_bert.py [--ttfc PATH] [--dtype f64|f32] [--steps N] [--batch N] [--seed N]

f64 (default): the two free-running loss curves over N steps (default 50) must agree within 1e-10
relative at every step. f32: every step is taken from the same state (ttfc resumes from its own
checkpoint one step at a time and JAX takes the same step from that state; free-running f32 curves
drift apart as Adam amplifies rounding): the loss within 1e-5 relative, the parameter update and
Adam's moments within 1e-4 relative (L2). Exits 1 on a larger difference.

The data are random (a fresh seed gives fresh weights and batches): token ids over the whole
vocabulary, lengths 5 to S, up to 20 predicted positions per example, sentence labels."""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_jax_training import read_safetensors  # noqa: E402

jax.config.update("jax_platform_name", "cpu")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB, HIDDEN, HEADS, INNER, POSITIONS, PREDICTIONS = 8192, 128, 2, 512, 128, 20
LAYER = ["wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo", "ln1.scale", "ln1.offset",
         "w1", "b1", "w2", "b2", "ln2.scale", "ln2.offset"]


def parameter_shapes():
    shapes = {"tok_emb": (VOCAB, HIDDEN), "pos_emb": (POSITIONS, HIDDEN), "seg_emb": (2, HIDDEN),
              "emb_ln.scale": (HIDDEN,), "emb_ln.offset": (HIDDEN,)}
    for layer in range(2):
        for name in LAYER:
            shape = {"w1": (HIDDEN, INNER), "b1": (INNER,), "w2": (INNER, HIDDEN)}.get(name)
            if shape is None:
                shape = (HIDDEN, HIDDEN) if name.startswith("w") else (HIDDEN,)
            shapes[f"l{layer}.{name}"] = shape
    shapes.update({"mlm.w": (HIDDEN, HIDDEN), "mlm.b": (HIDDEN,), "mlm.ln.scale": (HIDDEN,), "mlm.ln.offset": (HIDDEN,),
                   "mlm.bias": (VOCAB,), "pool.w": (HIDDEN, HIDDEN), "pool.b": (HIDDEN,), "nsp.w": (HIDDEN, 2), "nsp.b": (2,)})
    return shapes


def initial_weights(rng, float_type):
    """BERT's N(0, 0.02) for matrices; scales near 1 and nonzero offsets and biases, so every
    parameter's role is exercised from step 1."""
    init = {}
    for name, shape in parameter_shapes().items():
        if name.endswith(".scale"):
            init[name] = 1 + 0.1 * rng.standard_normal(shape)
        elif len(shape) == 2:
            init[name] = 0.02 * rng.standard_normal(shape)
        else:
            init[name] = 0.05 * rng.standard_normal(shape)
    return {k: v.astype(float_type) for k, v in init.items()}


def random_data(rng, count, padded):
    lengths = rng.integers(5, padded + 1, count).astype(np.int32)
    tokens = np.zeros((count, padded), np.int32)
    segments = np.zeros((count, padded), np.int32)
    positions = np.zeros((count, PREDICTIONS), np.int32)
    ids = np.zeros((count, PREDICTIONS), np.int32)
    weights = np.zeros((count, PREDICTIONS), np.float32)
    for i, length in enumerate(lengths):
        tokens[i, :length] = rng.integers(5, VOCAB, length)
        tokens[i, 0] = 2
        segments[i, length // 2:length] = 1
        k = int(min(PREDICTIONS, max(1, round(0.15 * length))))
        chosen = np.sort(rng.choice(np.arange(1, length), k, replace=False))
        positions[i, :k] = chosen
        ids[i, :k] = tokens[i, chosen]
        weights[i, :k] = 1
        tokens[i, chosen] = 4
    return {"tokens": tokens, "segments": segments, "lengths": lengths, "mlm_positions": positions,
            "mlm_ids": ids, "mlm_weights": weights, "sentence_labels": rng.integers(0, 2, count).astype(np.int32)}


def layer_norm(x, scale, offset):
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + 1e-12) * scale + offset


def loss_fn(p, batch, dropout_key=None, rate=0.1):
    """The loss of examples/bert_tiny.ttir; with `dropout_key`, dropout at its four places (JAX's
    own random bits: for the benchmark's cost, not for comparing values)."""
    tokens, segments, lengths = batch["tokens"], batch["segments"], batch["lengths"]
    b, t = tokens.shape
    keys = list(jax.random.split(dropout_key, 7)) if dropout_key is not None else []

    def dropout(x):
        if not keys:
            return x
        return jnp.where(jax.random.bernoulli(keys.pop(), 1 - rate, x.shape), x / (1 - rate), 0)
    h = dropout(layer_norm(p["tok_emb"][tokens] + p["seg_emb"][segments] + p["pos_emb"][jnp.arange(t)],
                           p["emb_ln.scale"], p["emb_ln.offset"]))
    mask = jnp.where(jnp.arange(t)[None, :] < lengths[:, None], 0.0, -10000.0).astype(h.dtype)[:, None, None, :]
    for layer in range(2):
        w = {name: p[f"l{layer}.{name}"] for name in LAYER}

        def heads(z):
            return z.reshape(b, t, HEADS, HIDDEN // HEADS).transpose(0, 2, 1, 3)
        q, k, v = (heads(h @ w["w" + n] + w["b" + n]) for n in "qkv")
        scores = q @ k.transpose(0, 1, 3, 2) * 0.125 + mask
        context = (dropout(jax.nn.softmax(scores, axis=-1)) @ v).transpose(0, 2, 1, 3).reshape(b, t, HIDDEN)
        a = layer_norm(dropout(context @ w["wo"] + w["bo"]) + h, w["ln1.scale"], w["ln1.offset"])
        f = dropout(jax.nn.gelu(a @ w["w1"] + w["b1"], approximate=False) @ w["w2"] + w["b2"])
        h = layer_norm(f + a, w["ln2.scale"], w["ln2.offset"])
    picked = jnp.take_along_axis(h, batch["mlm_positions"][:, :, None], axis=1)
    transformed = layer_norm(jax.nn.gelu(picked @ p["mlm.w"] + p["mlm.b"], approximate=False), p["mlm.ln.scale"], p["mlm.ln.offset"])
    logits = transformed @ p["tok_emb"].T + p["mlm.bias"]
    ce = jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(logits, batch["mlm_ids"][:, :, None], axis=-1)[..., 0]
    weights = batch["mlm_weights"].astype(h.dtype)
    mlm = jnp.sum(ce * weights) / (jnp.sum(weights) + 1e-5)
    pooled = jnp.tanh(h[:, 0, :] @ p["pool.w"] + p["pool.b"])
    n = pooled @ p["nsp.w"] + p["nsp.b"]
    labels = batch["sentence_labels"]
    nsp = jnp.mean(jax.nn.logsumexp(n, axis=-1) - jnp.take_along_axis(n, labels[:, None], axis=-1)[:, 0])
    return mlm + nsp


@jax.jit
def adam_step(p, m, v, t, batch):
    loss, g = jax.value_and_grad(loss_fn)(p, batch)
    m = {k: 0.9 * m[k] + 0.1 * g[k] for k in p}
    v = {k: 0.999 * v[k] + 0.001 * g[k] * g[k] for k in p}
    c1, c2 = 1 - 0.9 ** t, 1 - 0.999 ** t
    # ttfc's form: the bias corrections folded into two per-step scalars (IR-specs/training.md)
    a, e = 1e-3 * jnp.sqrt(c2) / c1, 1e-8 * jnp.sqrt(c2)
    p = {k: p[k] - (m[k] * a) / (jnp.sqrt(v[k]) + e) for k in p}
    return loss, p, m, v


def batch_at(data, step, batch, trim=False):
    """Batch `step` (0-based) in file order. ttfc cuts it to its longest sequence
    (--sequence-lengths); JAX runs it at the padded length (one compile for every batch), which
    computes the same numbers: padded keys get probability exp(-10000 - max) = 0 exactly, and no
    padded query row reaches the loss. `trim` gives the cut batch."""
    count = len(data["lengths"])
    start = (step * batch) % count
    rows = np.arange(start, min(start + batch, count))
    length = max(1, int(data["lengths"][rows].max())) if trim else data["tokens"].shape[1]
    out = {}
    for name, column in data.items():
        out[name] = column[rows][:, :length] if name in ("tokens", "segments") else column[rows]
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ttfc", default=os.path.join(ROOT, ".build", "release", "ttfc"))
    parser.add_argument("--dtype", choices=["f32", "f64"], default="f64")
    parser.add_argument("--steps", type=int, default=None, help="default 50 (f64) or 12 (f32)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--padded", type=int, default=48, help="the data's padded sequence length (at most 128)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    steps = args.steps or (50 if args.dtype == "f64" else 12)
    float_type = np.float64 if args.dtype == "f64" else np.float32
    if args.dtype == "f64":
        jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(args.seed)
    init = initial_weights(rng, float_type)
    data = random_data(rng, steps * args.batch, args.padded)

    with tempfile.TemporaryDirectory() as tmp:
        text = open(os.path.join(ROOT, "examples", "bert_tiny.ttir")).read().replace("rate = 0.1", "rate = 0.0")
        if args.dtype == "f64":
            text = text.replace("f32[", "f64[")
        model = os.path.join(tmp, "bert.ttir")
        open(model, "w").write(text)
        np.savez(os.path.join(tmp, "init.npz"), **init)
        np.savez(os.path.join(tmp, "data.npz"), **data)
        common = [args.ttfc, "train", model, "--data", os.path.join(tmp, "data.npz"), "--init-params",
                  os.path.join(tmp, "init.npz"), "--no-shuffle", "--batch", str(args.batch), "--sequence-lengths", "lengths",
                  "--optimizer", "adam", "--lr", "1e-3"]
        if args.dtype == "f64":
            return free_running(args, common, tmp, init, data, steps)
        return step_by_step(args, common, tmp, data, steps)


def relative(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


def free_running(args, common, tmp, init, data, steps):
    metrics = os.path.join(tmp, "metrics.jsonl")
    subprocess.run(common + ["--steps", str(steps), "--metrics", metrics], check=True, stdout=subprocess.DEVNULL)
    ours = [json.loads(line)["loss"] for line in open(metrics) if '"loss"' in line and '"eval"' not in line]
    p = {k: jnp.asarray(v) for k, v in init.items()}
    m = {k: jnp.zeros_like(v) for k, v in p.items()}
    v = {k: jnp.zeros_like(x) for k, x in p.items()}
    theirs = []
    for t in range(steps):
        loss, p, m, v = adam_step(p, m, v, float(t + 1), batch_at(data, t, args.batch))
        theirs.append(float(loss))
    errors = [relative(a, b) for a, b in zip(ours, theirs)]
    worst = int(np.argmax(errors))
    lengths = [int(batch_at(data, t, args.batch, trim=True)["tokens"].shape[1]) for t in range(steps)]
    print(f"ttfc vs JAX {jax.__version__}: {steps} Adam steps of BERT-tiny (f64, dropout off, batch {args.batch}, "
          f"ttfc's batch lengths {min(lengths)}..{max(lengths)}, JAX's {args.padded}); losses {theirs[0]:.6f} -> {theirs[-1]:.6f}")
    print(f"max relative loss difference {errors[worst]:.2e} at step {worst + 1} (ttfc {ours[worst]:.15f}, JAX {theirs[worst]:.15f}); "
          f"mean {np.mean(errors):.2e}")
    ok = len(ours) == steps and max(errors) <= 1e-10
    print("PASS" if ok else "FAIL: the f64 loss curves differ by more than 1e-10 relative")
    return 0 if ok else 1


def step_by_step(args, common, tmp, data, steps):
    checkpoints = os.path.join(tmp, "checkpoints")
    metrics = os.path.join(tmp, "one-step.jsonl")
    common = common + ["--checkpoint", checkpoints, "--metrics", metrics]
    subprocess.run(common + ["--steps", "1"], check=True, stdout=subprocess.DEVNULL)
    path = os.path.join(checkpoints, "checkpoint.safetensors")
    state = read_safetensors(path)
    names = list(parameter_shapes())

    def norm(arrays):
        return float(np.sqrt(sum(np.sum(np.square(np.asarray(a, np.float64))) for a in arrays)))

    worst = {"loss": (0.0, 0), "update": (0.0, 0), "m": (0.0, 0), "v": (0.0, 0)}
    for t in range(1, steps):
        subprocess.run(common + ["--steps", str(t + 1), "--resume"], check=True, stdout=subprocess.DEVNULL)
        ours = [json.loads(line)["loss"] for line in open(metrics) if '"loss"' in line and '"eval"' not in line
                and json.loads(line)["step"] == t + 1][-1]
        after = read_safetensors(path)
        p = {k: jnp.asarray(state[k]) for k in names}
        m = {k: jnp.asarray(state["m." + k]) for k in names}
        v = {k: jnp.asarray(state["v." + k]) for k in names}
        loss, p2, m2, v2 = adam_step(p, m, v, float(t + 1), batch_at(data, t, args.batch))
        errors = {
            "loss": relative(ours, float(loss)),
            "update": norm([np.asarray(p2[k]) - after[k] for k in names]) / norm([np.asarray(p2[k]) - state[k] for k in names]),
            "m": norm([np.asarray(m2[k]) - after["m." + k] for k in names]) / norm([m2[k] for k in names]),
            "v": norm([np.asarray(v2[k]) - after["v." + k] for k in names]) / norm([v2[k] for k in names]),
        }
        for key, e in errors.items():
            if e > worst[key][0]:
                worst[key] = (e, t + 1)
        state = after
    print(f"ttfc vs JAX {jax.__version__}, each of steps 2..{steps} of BERT-tiny (f32, dropout off, batch {args.batch}) "
          f"taken from ttfc's checkpointed state by both:")
    limits = {"loss": 1e-5, "update": 1e-4, "m": 1e-4, "v": 1e-4}
    for key, what in [("loss", "loss"), ("update", "parameter update (L2 of the difference / of JAX's update)"),
                      ("m", "new first moment m (relative L2)"), ("v", "new second moment v (relative L2)")]:
        print(f"  {what}: max relative difference {worst[key][0]:.2e} at step {worst[key][1]} (limit {limits[key]:g})")
    ok = all(worst[key][0] <= limits[key] for key in limits)
    print("PASS" if ok else "FAIL: a step differs by more than its limit")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
