#!/usr/bin/env python3
"""The WORKLOADS.md benchmarks on JAX/XLA CPU, for tools/bench to compare against in the same run.

Prints one JSON object: W0 and W1 in GB/s (read + write bytes / time), W2 and W3 in ms, W7 in
GFLOP/s. Medians of repeated runs after warm-up (compilation excluded)."""
import json
import sys
import time

import numpy as np

import jax
import jax.numpy as jnp

jax.config.update("jax_platform_name", "cpu")
REPS = int(sys.argv[1]) if len(sys.argv) > 1 else 20


def median(fn, reps=REPS, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


rng = np.random.default_rng(0)
out = {}

src = np.ones(64 << 18, dtype=np.float32)  # 64 MiB
dst = np.empty_like(src)
out["W0"] = 2 * src.nbytes / median(lambda: np.copyto(dst, src)) / 1e9

n = 16777216
x = jnp.asarray(rng.uniform(-1, 1, n).astype(np.float32))


@jax.jit
def w1(x):
    z = x * 1.7 + 0.3
    return 0.5 * z * (1 + jnp.tanh(0.7978845608 * (z + 0.044715 * z ** 3)))


out["W1"] = 8 * n / median(lambda: w1(x).block_until_ready()) / 1e9

m = jnp.asarray(rng.uniform(-1, 1, (4096, 1024)).astype(np.float32))
w2 = jax.jit(lambda v: jax.nn.softmax(v, axis=-1))
out["W2"] = median(lambda: w2(m).block_until_ready()) * 1e3


@jax.jit
def w3(v):
    mean = v.mean(axis=-1, keepdims=True)
    d = v - mean
    var = (d * d).mean(axis=-1, keepdims=True)
    return d * jax.lax.rsqrt(var + 1e-5)


out["W3"] = median(lambda: w3(m).block_until_ready()) * 1e3

a = jnp.asarray(rng.uniform(-1, 1, (1024, 1024)).astype(np.float32))
b = jnp.asarray(rng.uniform(-1, 1, (1024, 1024)).astype(np.float32))
w7 = jax.jit(jnp.dot)
out["W7"] = 2 * 1024 ** 3 / median(lambda: w7(a, b).block_until_ready()) / 1e9
# W4 / W5: the MLP 512-1024-1024-1 training step with Adam (hand-written Adam, as ttfc's).
def init(shape, key):
    limit = np.sqrt(6 / (shape[0] + shape[1]))
    return jnp.asarray(rng.uniform(-limit, limit, shape).astype(np.float32))


params = [init((512, 1024), 1), jnp.zeros(1024), init((1024, 1024), 2), jnp.zeros(1024), init((1024, 1), 3), jnp.zeros(1)]


def loss_fn(p, x, y):
    h = jax.nn.relu(x @ p[0] + p[1])
    h = jax.nn.relu(h @ p[2] + p[3])
    z = (h @ p[4] + p[5]).reshape(-1)
    return jnp.mean(jnp.maximum(z, 0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z))))


def train_step(p, m, v, t, x, y, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    loss, g = jax.value_and_grad(loss_fn)(p, x, y)
    m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g)]
    v = [b2 * vi + (1 - b2) * gi * gi for vi, gi in zip(v, g)]
    c1, c2 = 1 - b1 ** t, 1 - b2 ** t
    p = [pi - lr * (mi / c1) / (jnp.sqrt(vi / c2) + eps) for pi, mi, vi in zip(p, m, v)]
    return loss, p, m, v


step = jax.jit(train_step, donate_argnums=(0, 1, 2))
xb = jnp.asarray(rng.uniform(-1, 1, (256, 512)).astype(np.float32))
yb = jnp.asarray(rng.integers(0, 2, 256).astype(np.float32))
m0 = [jnp.zeros_like(p) for p in params]
v0 = [jnp.zeros_like(p) for p in params]
start = time.perf_counter()
state = step(params, m0, v0, 1.0, xb, yb)
jax.block_until_ready(state)
out["W5"] = time.perf_counter() - start
holder = {"state": state, "t": 2.0}


def one_step():
    _, p, m, v = holder["state"]
    holder["state"] = step(p, m, v, holder["t"], xb, yb)
    holder["t"] += 1
    jax.block_until_ready(holder["state"])


w4 = median(one_step)
out["W4"] = w4 * 1e3
out["W4f"] = 6 * 256 * (512 * 1024 + 1024 * 1024 + 1024) / w4 / 1e9
out["jax_version"] = jax.__version__
print(json.dumps(out))
