#!/usr/bin/env python3
"""Training against JAX: the W4 MLP (examples/mlp_w4.ttir) from the same initial weights on the
same batches for 100 Adam steps (lr 1e-3), with ttfc and with JAX, and the loss curves compared.

  tools/compare_jax_training.py [--ttfc PATH] [--steps N] [--dtype f32|f64] [--self-check]

Needs numpy and jax (tools/bench --compare jax installs JAX into .venv-bench/; run this script with
that venv's python). Exits 1 if any step's loss differs by more than 1e-4 relative."""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

import jax
import jax.numpy as jnp

jax.config.update("jax_platform_name", "cpu")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ttfc", default=os.path.join(ROOT, ".build", "release", "ttfc"))
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--dtype", choices=["f32", "f64"], default="f32",
                        help="f64 removes float32 rounding noise, which Adam amplifies over many steps")
    parser.add_argument("--self-check", action="store_true",
                        help="also train JAX against itself with every matmul's sum over K split in two "
                             "halves (the same math, summed in another order) and print how far those "
                             "two JAX curves differ: the floor for any implementation whose sums differ")
    args = parser.parse_args()
    float_type = np.float32 if args.dtype == "f32" else np.float64
    if args.dtype == "f64":
        jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(42)
    batch = 256

    def glorot(shape):
        limit = np.sqrt(6 / (shape[0] + shape[1]))
        return rng.uniform(-limit, limit, shape).astype(float_type)

    init = {"w1": glorot((512, 1024)), "b1": np.zeros(1024, float_type), "w2": glorot((1024, 1024)),
            "b2": np.zeros(1024, float_type), "w3": glorot((1024, 1)), "b3": np.zeros(1, float_type)}
    n = batch * args.steps
    x = rng.normal(0, 1, (n, 512)).astype(float_type)
    teacher = rng.normal(0, 1, 512)
    y = (x @ teacher + rng.normal(0, 4, n) > 0).astype(float_type)

    with tempfile.TemporaryDirectory() as tmp:
        np.savez(os.path.join(tmp, "init.npz"), **init)
        model = os.path.join(ROOT, "examples", "mlp_w4.ttir")
        if args.dtype == "f64":
            text = open(model).read().replace("f32[", "f64[")
            model = os.path.join(tmp, "mlp_w4_f64.ttir")
            open(model, "w").write(text)
        np.savez(os.path.join(tmp, "data.npz"), x=x, y=y)
        metrics = os.path.join(tmp, "metrics.jsonl")
        subprocess.run([args.ttfc, "train", model, "--data", os.path.join(tmp, "data.npz"),
                        "--init-params", os.path.join(tmp, "init.npz"), "--no-shuffle", "--batch", str(batch),
                        "--steps", str(args.steps), "--optimizer", "adam", "--lr", "1e-3", "--metrics", metrics],
                       check=True, stdout=subprocess.DEVNULL)
        ours = [json.loads(line)["loss"] for line in open(metrics) if '"loss"' in line and '"eval"' not in line]

    names = ["w1", "b1", "w2", "b2", "w3", "b3"]

    def matmul(a, b, split):
        if not split:
            return a @ b
        k = a.shape[1] // 2
        return a[:, :k] @ b[:k] + a[:, k:] @ b[k:]

    def jax_curve(split):
        def loss_fn(p, x, y):
            h = jax.nn.relu(matmul(x, p[0], split) + p[1])
            h = jax.nn.relu(matmul(h, p[2], split) + p[3])
            z = (h @ p[4] + p[5]).reshape(-1)
            return jnp.mean(jnp.maximum(z, 0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z))))

        @jax.jit
        def step(p, m, v, t, x, y):
            loss, g = jax.value_and_grad(loss_fn)(p, x, y)
            m = [0.9 * mi + 0.1 * gi for mi, gi in zip(m, g)]
            v = [0.999 * vi + 0.001 * gi * gi for vi, gi in zip(v, g)]
            c1, c2 = 1 - 0.9 ** t, 1 - 0.999 ** t
            # ttfc's form: the bias corrections folded into two per-step scalars (IR-specs/training.md)
            a, e = 1e-3 * jnp.sqrt(c2) / c1, 1e-8 * jnp.sqrt(c2)
            p = [pi - (mi * a) / (jnp.sqrt(vi) + e) for pi, mi, vi in zip(p, m, v)]
            return loss, p, m, v

        params = [jnp.asarray(init[k]) for k in names]
        m = [jnp.zeros_like(a) for a in params]
        v = [jnp.zeros_like(a) for a in params]
        curve = []
        for t in range(args.steps):
            loss, params, m, v = step(params, m, v, float(t + 1), x[t * batch:(t + 1) * batch], y[t * batch:(t + 1) * batch])
            curve.append(float(loss))
        return curve

    def relative(a, b):
        return [abs(u - w) / max(abs(w), 1e-12) for u, w in zip(a, b)]

    theirs = jax_curve(split=False)
    errors = relative(ours, theirs)
    worst = int(np.argmax(errors))
    print(f"ttfc vs JAX {jax.__version__}: {len(errors)} Adam steps of the W4 MLP in {args.dtype}; losses {theirs[0]:.6f} -> {theirs[-1]:.6f}")
    print(f"max relative loss difference {errors[worst]:.2e} at step {worst + 1} (ttfc {ours[worst]:.8f}, JAX {theirs[worst]:.8f}); "
          f"mean {np.mean(errors):.2e}")
    print("relative difference by step: " + " ".join(f"{e:.1e}" for e in errors[:12]) + " ... " + " ".join(f"{e:.1e}" for e in errors[-5:]))
    if args.self_check:
        itself = relative(jax_curve(split=True), theirs)
        at = int(np.argmax(itself))
        print(f"JAX against itself, matmul sums over K split in two halves: max relative loss difference "
              f"{itself[at]:.2e} at step {at + 1}, mean {np.mean(itself):.2e} (ttfc vs JAX: max {errors[worst]:.2e})")
    ok = len(ours) == len(theirs) and max(errors) <= 1e-4
    print("PASS" if ok else "FAIL: the loss curves differ by more than 1e-4 relative")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
