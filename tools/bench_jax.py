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
out["jax_version"] = jax.__version__
print(json.dumps(out))
