#!/usr/bin/env python3
"""The WORKLOADS.md benchmarks on JAX/XLA CPU, for tools/bench to compare against in the same run.

Prints one JSON object: W0 and W1 in GB/s (read + write bytes / time), W2 and W3 in ms, W7 and
W7h (bf16 operands, f32 output) in GFLOP/s (medians of repeated runs after warm-up, compilation excluded); W4 in ms/step, W5 (cold
compile) in s; W6 and W6s (ours: variable sequence length) in total seconds with compilation and
their compile counts. Arguments: repetitions, then files to write W6's batch sizes and W6s's
lengths to, so ttfc-bench runs the same shapes. BENCH_JAX_ONLY=W4 measures W4 and W5 alone (tools/bench
alternates such runs with ttfc's, so both sides see the same machine load); BENCH_JAX_ONLY=W7h
measures W7 and W7h alone; BENCH_JAX_ONLY=W6s measures W4, W5 and W6s (for alternating W6s rounds)."""
import json
import os
import sys
import time

import numpy as np

import jax
import jax.numpy as jnp

jax.config.update("jax_platform_name", "cpu")
# BENCH_JAX_CACHE=DIR: XLA's persistent compilation cache in DIR, so tools/bench's later W6s rounds
# load the 100-odd programs the first round compiled (their cold figure is then not cold; only
# their warm figure is used).
if os.environ.get("BENCH_JAX_CACHE"):
    jax.config.update("jax_compilation_cache_dir", os.environ["BENCH_JAX_CACHE"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
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
ONLY = os.environ.get("BENCH_JAX_ONLY", "")

# W9 (BENCH_JAX_ONLY=W9, alternating with ttfc-bench --only W9 in tools/bench): one SGD-momentum
# training step of a ResNet stage (batch 64, 32x32, 64 channels, two basic residual blocks with
# batch norm) and of a depthwise-separable block (3x3 depthwise, batch norm, ReLU, 1x1 to 128,
# batch norm, ReLU), each with global average pooling, a dense layer to 10 classes and softmax
# cross entropy: the models of ttfc-bench's W9 (batch norm there is the batch_norm_training op), here in jnp (training mode,
# biased batch variance, epsilon 1e-3). ms/step and GFLOP/s counted as ttfc-bench counts them.
if ONLY == "W9":
    from jax import lax

    def he(shape, fan_in):
        return jnp.asarray(rng.normal(0, np.sqrt(2 / fan_in), shape).astype(np.float32))

    def conv(x, k, groups=1):
        return lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=groups)

    def bn(x, scale, offset):
        m = jnp.mean(x, axis=(0, 1, 2))
        d = x - m
        v = jnp.mean(d * d, axis=(0, 1, 2))
        return d * (lax.rsqrt(v + 1e-3) * scale) + offset

    def head(p, h, y):
        z = jnp.mean(h, axis=(1, 2)) @ p["wd"] + p["bd"]
        return jnp.mean(-jnp.sum(y * jax.nn.log_softmax(z), axis=-1))

    def stage_loss(p, x, y):
        h = x
        for b in (1, 2):
            r = jax.nn.relu(bn(conv(h, p[f"k{b}a"]), p[f"s{b}a"], p[f"o{b}a"]))
            h = jax.nn.relu(bn(conv(r, p[f"k{b}b"]), p[f"s{b}b"], p[f"o{b}b"]) + h)
        return head(p, jax.nn.relu(h), y)

    def separable_loss(p, x, y):
        h = jax.nn.relu(bn(conv(x, p["dk"], groups=64), p["s1"], p["o1"]))
        h = jax.nn.relu(bn(conv(h, p["pk"]), p["s2"], p["o2"]))
        return head(p, h, y)

    stage = {"wd": he((64, 10), 64), "bd": jnp.zeros(10)}
    for b in (1, 2):
        for s in "ab":
            stage[f"k{b}{s}"] = he((3, 3, 64, 64), 576)
            stage[f"s{b}{s}"] = jnp.ones(64)
            stage[f"o{b}{s}"] = jnp.zeros(64)
    separable = {"dk": he((3, 3, 1, 64), 9), "pk": he((1, 1, 64, 128), 64), "s1": jnp.ones(64), "o1": jnp.zeros(64),
                 "s2": jnp.ones(128), "o2": jnp.zeros(128), "wd": he((128, 10), 128), "bd": jnp.zeros(10)}

    def momentum_step(loss):
        def step(p, v, x, y, lr=1e-3, mu=0.9):
            value, g = jax.value_and_grad(loss)(p, x, y)
            v = jax.tree_util.tree_map(lambda vi, gi: mu * vi + gi, v, g)
            p = jax.tree_util.tree_map(lambda pi, vi: pi - lr * vi, p, v)
            return value, p, v
        return jax.jit(step, donate_argnums=(0, 1))

    x9 = jnp.asarray(rng.uniform(-1, 1, (64, 32, 32, 64)).astype(np.float32))
    y9 = jnp.asarray(np.eye(10, dtype=np.float32)[np.arange(64) % 10])
    pixels = 64 * 32 * 32
    flops = {"W9": 11 * 2 * pixels * 9 * 64 * 64 + 3 * 2 * 64 * 64 * 10,
             "W9d": 2 * (2 * pixels * 9 * 64) + 3 * (2 * pixels * 64 * 128) + 3 * 2 * 64 * 128 * 10}
    for key, loss, params in (("W9", stage_loss, stage), ("W9d", separable_loss, separable)):
        step = momentum_step(loss)
        holder = {"state": step(params, jax.tree_util.tree_map(jnp.zeros_like, params), x9, y9)}
        jax.block_until_ready(holder["state"])

        def one():
            _, p, v = holder["state"]
            holder["state"] = step(p, v, x9, y9)
            jax.block_until_ready(holder["state"])

        t = median(one, warmup=1)
        out[key] = t * 1e3
        out[key + "f"] = flops[key] / t / 1e9
    print(json.dumps(out))
    sys.exit(0)

# W10 (BENCH_JAX_ONLY=W10, alternating with ttfc-bench --only W10 in tools/bench): one Adam step
# of BERT-tiny (examples/bert_tiny.ttir; the same encoder in jnp, tools/compare_jax_bert.py) at
# batch 32, sequence 128, 20 predicted positions per example, dropout 0.1 as the model has it.
if ONLY == "W10":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import compare_jax_bert as bert
    params = {k: jnp.asarray(v) for k, v in bert.initial_weights(np.random.default_rng(1), np.float32).items()}
    data = bert.random_data(np.random.default_rng(2), 32, 128)
    data["lengths"][:] = 128
    batch = {k: jnp.asarray(v) for k, v in data.items()}

    @jax.jit
    def bert_step(p, m, v, t, key):
        loss, g = jax.value_and_grad(bert.loss_fn)(p, batch, key)
        m = {k: 0.9 * m[k] + 0.1 * g[k] for k in p}
        v = {k: 0.999 * v[k] + 0.001 * g[k] * g[k] for k in p}
        a = 1e-3 * jnp.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        return loss, {k: p[k] - a * m[k] / (jnp.sqrt(v[k]) + 1e-8) for k in p}, m, v

    zeros = {k: jnp.zeros_like(x) for k, x in params.items()}
    holder = {"state": bert_step(params, zeros, zeros, 1.0, jax.random.PRNGKey(0)), "t": 1}
    jax.block_until_ready(holder["state"])

    def one():
        _, p, m, v = holder["state"]
        holder["t"] += 1
        holder["state"] = bert_step(p, m, v, float(holder["t"]), jax.random.PRNGKey(holder["t"]))
        jax.block_until_ready(holder["state"])

    out["W10"] = median(one, warmup=1) * 1e3
    print(json.dumps(out))
    sys.exit(0)

if not ONLY:
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

if not ONLY or ONLY == "W7h":
    a = jnp.asarray(rng.uniform(-1, 1, (1024, 1024)).astype(np.float32))
    b = jnp.asarray(rng.uniform(-1, 1, (1024, 1024)).astype(np.float32))
    w7 = jax.jit(jnp.dot)
    out["W7"] = 2 * 1024 ** 3 / median(lambda: w7(a, b).block_until_ready()) / 1e9

    # W7h: the same product on bf16 operands with f32 accumulation and output.
    ah, bh = a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)
    w7h = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.float32))
    out["W7h"] = 2 * 1024 ** 3 / median(lambda: w7h(ah, bh).block_until_ready()) / 1e9

if ONLY == "W7h":
    print(json.dumps(out))
    sys.exit(0)

# W4 / W5: the MLP 512-1024-1024-1 training step with Adam (hand-written Adam, as ttfc's).
def init(shape, key):
    limit = np.sqrt(6 / (shape[0] + shape[1]))
    return jnp.asarray(rng.uniform(-limit, limit, shape).astype(np.float32))


def mlp_params():
    return [init((512, 1024), 1), jnp.zeros(1024), init((1024, 1024), 2), jnp.zeros(1024), init((1024, 1), 3), jnp.zeros(1)]


params = mlp_params()


def loss_fn(p, x, y):
    h = jax.nn.relu(x @ p[0] + p[1])
    h = jax.nn.relu(h @ p[2] + p[3])
    z = (h @ p[4] + p[5]).reshape(-1)
    return jnp.mean(jnp.maximum(z, 0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z))))


def adam_step(loss):
    """A training step of `loss` with Adam written out, as ttfc's optimizer rewrite does."""
    def step(p, m, v, t, x, y, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
        value, g = jax.value_and_grad(loss)(p, x, y)
        m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g)]
        v = [b2 * vi + (1 - b2) * gi * gi for vi, gi in zip(v, g)]
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        a, e = lr * jnp.sqrt(c2) / c1, eps * jnp.sqrt(c2)  # ttfc's form: one sqrt, one divide per element
        p = [pi - (mi * a) / (jnp.sqrt(vi) + e) for pi, mi, vi in zip(p, m, v)]
        return value, p, m, v
    return step


train_step = adam_step(loss_fn)


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


# W4h: the same step in bf16 mixed precision as ttfc's amp rewrite computes it: f32 master
# weights cast to bf16 at use, matmuls, bias adds and ReLU in bf16, the loss in f32.
def loss_fn_bf16(p, x, y):
    bf = jnp.bfloat16
    h = jax.nn.relu(x.astype(bf) @ p[0].astype(bf) + p[1].astype(bf))
    h = jax.nn.relu(h @ p[2].astype(bf) + p[3].astype(bf))
    z = (h @ p[4].astype(bf) + p[5].astype(bf)).reshape(-1).astype(jnp.float32)
    return jnp.mean(jnp.maximum(z, 0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z))))


step_h = jax.jit(adam_step(loss_fn_bf16), donate_argnums=(0, 1, 2))
ph = mlp_params()
state_h = step_h(ph, [jnp.zeros_like(q) for q in ph], [jnp.zeros_like(q) for q in ph], 1.0, xb, yb)
jax.block_until_ready(state_h)
holder_h = {"state": state_h, "t": 2.0}


def one_step_h():
    _, p, m, v = holder_h["state"]
    holder_h["state"] = step_h(p, m, v, holder_h["t"], xb, yb)
    holder_h["t"] += 1
    jax.block_until_ready(holder_h["state"])


w4h = median(one_step_h)
out["W4h"] = w4h * 1e3
out["W4hf"] = 6 * 256 * (512 * 1024 + 1024 * 1024 + 1024) / w4h / 1e9

if ONLY and ONLY != "W6s":
    print(json.dumps(out))
    sys.exit(0)

# W6: the W4 step on 200 batches of sizes default_rng(0).integers(1, 513, 200), cold (a fresh
# jit, so every new shape compiles, as it would in a real run). W6c: how many compiles that took.
sizes = np.random.default_rng(0).integers(1, 513, 200)
with open(sys.argv[2] if len(sys.argv) > 2 else "/dev/null", "w") as f:
    f.write(",".join(str(int(s)) for s in sizes))
batches = [(jnp.asarray(rng.uniform(-1, 1, (int(s), 512)).astype(np.float32)),
            jnp.asarray(rng.integers(0, 2, int(s)).astype(np.float32))) for s in sizes]
fresh = jax.jit(train_step, donate_argnums=(0, 1, 2))
p6 = mlp_params()  # W4 donated (deleted) the first set


def varying_run(step, params, batches):
    """Cold (every new shape compiles), then the same batches again warm: (cold s, compiles, warm s)."""
    state = (None, params, [jnp.zeros_like(p) for p in params], [jnp.zeros_like(p) for p in params])
    times = []
    for offset in (1, 1 + len(batches)):
        start = time.perf_counter()
        for i, (x, y) in enumerate(batches):
            state = step(state[1], state[2], state[3], float(i + offset), x, y)
        jax.block_until_ready(state)
        times.append(time.perf_counter() - start)
        if offset == 1:
            compiles = step._cache_size()
    return times[0], compiles, times[1]


if ONLY != "W6s":
    out["W6"], out["W6c"], out["W6w"] = varying_run(fresh, p6, batches)

# W6s (ours): the attention-pooled sequence classifier of ttfc-bench, batch 32, 200 steps with
# lengths T log-normal around 48 (4..256), Adam; cold.
lengths = np.clip(np.round(48 * np.exp(0.6 * np.random.default_rng(1).uniform(-2, 2, 200))), 4, 256).astype(int)
with open(sys.argv[3] if len(sys.argv) > 3 else "/dev/null", "w") as f:
    f.write(",".join(str(int(t)) for t in lengths))
sparams = [init((64, 128), 1), jnp.zeros(128), init((128, 1), 2), init((128, 1), 3), jnp.zeros(1)]


def seq_loss(p, x, y):
    h = jnp.tanh(x @ p[0] + p[1])
    a = jax.nn.softmax((h @ p[2])[..., 0], axis=1)
    pooled = jnp.sum(h * a[..., None], axis=1)
    z = (pooled @ p[3] + p[4]).reshape(-1)
    return jnp.mean(jnp.maximum(z, 0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z))))


seq_step = adam_step(seq_loss)


sbatches = [(jnp.asarray(rng.uniform(-1, 1, (32, int(t), 64)).astype(np.float32)),
             jnp.asarray(rng.integers(0, 2, 32).astype(np.float32))) for t in lengths]
sstep = jax.jit(seq_step, donate_argnums=(0, 1, 2))
out["W6s"], out["W6sc"], out["W6sw"] = varying_run(sstep, sparams, sbatches)
out["jax_version"] = jax.__version__
print(json.dumps(out))
