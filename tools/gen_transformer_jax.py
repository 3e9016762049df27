#!/usr/bin/env python3
"""The transformer ops against JAX: random gathers (repeated indices), scatter-adds, layer norms,
erf- and tanh-GELUs and integer-label softmax cross entropies, with their outputs and
vector-Jacobian products computed by JAX in float64, written as test cases that
Tests/TTTrainTests/TransformerJAXTests.swift runs through ttfc's interpreter, autodiff and compiler.

  tools/gen_transformer_jax.py [--out DIR] [--seed N] [--count N]

Each case NAME is NAME.ttir (a module with @forward(inputs) -> outputs and @loss(inputs,
cotangents) = sum of outputs times cotangents) and NAME.npz (in<i>, ct<k>, out<k>, grad<i> for
every float input i). Integer operands (indices, labels) are constants written into the IR, so
every input is differentiable. The cases in Tests/TTTrainTests/JAXTransformer/ were written with
the default seed; TTFC_JAX_TRANSFORMER_CASES=DIR points the Swift test at another set.

JAX's own spellings are the reference: jnp.take (gather), x.at[idx].add (scatter-add),
layer norm written in jnp (biased variance), jax.nn.gelu(approximate=False/True) and
optax-style sparse cross entropy (logsumexp minus the label's logit)."""
import sys

import numpy as np

import jax
import jax.numpy as jnp

from jax_cases import generate, ttype


def literal(a):
    return np.array2string(np.asarray(a), separator=", ", threshold=sys.maxsize).replace("\n", "")


def random_shape(rng, rank, high=6):
    return tuple(int(rng.integers(1, high)) for _ in range(rank))


def gather_case(rng):
    rank = int(rng.integers(1, 4))
    shape = random_shape(rng, rank)
    axis = int(rng.integers(0, rank))
    index_shape = random_shape(rng, int(rng.integers(1, 3)), 5)
    # Few distinct rows so indices repeat.
    idx = rng.integers(0, shape[axis], size=index_shape)
    dtype = ["i32", "i64"][rng.integers(0, 2)]
    x = rng.standard_normal(shape)

    def forward(x):
        return (jnp.take(x, idx, axis=axis),)

    y_shape = shape[:axis] + index_shape + shape[axis + 1:]
    lines = [f"%i = constant {literal(idx)} : {ttype(index_shape, dtype)}",
             f"%out0 = gather %in0, %i {{axis = {axis}}} : {ttype(y_shape)}"]
    return f"gather {shape} axis {axis} indices {index_shape}", [x], forward, lines, [y_shape]


def scatter_add_case(rng):
    rank = int(rng.integers(1, 4))
    shape = random_shape(rng, rank)
    axis = int(rng.integers(0, rank))
    index_shape = random_shape(rng, int(rng.integers(1, 3)), 5)
    idx = rng.integers(0, shape[axis], size=index_shape)
    u_shape = shape[:axis] + index_shape + shape[axis + 1:]
    x = rng.standard_normal(shape)
    u = rng.standard_normal(u_shape)

    def forward(x, u):
        # Move the axis first, add along it, move it back: .at[idx] indexes the leading axis.
        xt = jnp.moveaxis(x, axis, 0)
        ut = jnp.moveaxis(u.reshape(shape[:axis] + (-1,) + shape[axis + 1:]), axis, 0)
        out = xt.at[idx.reshape(-1)].add(ut)
        return (jnp.moveaxis(out, 0, axis),)

    lines = [f"%i = constant {literal(idx)} : {ttype(index_shape, 'i32')}",
             f"%out0 = scatter_add %in0, %i, %in1 {{axis = {axis}}} : {ttype(shape)}"]
    return f"scatter_add {shape} axis {axis} indices {index_shape}", [x, u], forward, lines, [shape]


def layer_norm_case(rng):
    rank = int(rng.integers(1, 4))
    shape = random_shape(rng, rank - 1) + (int(rng.integers(1, 40)),)
    d = shape[-1]
    eps = float([1e-5, 1e-3, 0.1][rng.integers(0, 3)])
    x = rng.standard_normal(shape) * rng.uniform(0.1, 3) + rng.uniform(-2, 2)
    scale = rng.standard_normal(d)
    offset = rng.standard_normal(d)

    def forward(x, scale, offset):
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean((x - mean) ** 2, axis=-1, keepdims=True)
        return ((x - mean) / jnp.sqrt(var + eps) * scale + offset,)

    lines = [f"%out0 = layer_norm %in0, %in1, %in2 {{epsilon = {eps!r}}} : {ttype(shape)}"]
    return f"layer_norm {shape} epsilon {eps}", [x, scale, offset], forward, lines, [shape]


def gelu_case(rng, approximate):
    shape = random_shape(rng, int(rng.integers(1, 4)), 9)
    x = rng.standard_normal(shape) * 3

    def forward(x):
        return (jax.nn.gelu(x, approximate=approximate),)

    lines = [f"%out0 = gelu %in0 {{approximate = {'true' if approximate else 'false'}}} : {ttype(shape)}"]
    return f"gelu approximate={approximate} {shape}", [x], forward, lines, [shape]


def sparse_cross_entropy_case(rng):
    shape = random_shape(rng, int(rng.integers(1, 3)), 7) + (int(rng.integers(1, 12)),)
    labels = rng.integers(0, shape[-1], size=shape[:-1])
    dtype = ["i32", "i64"][rng.integers(0, 2)]
    x = rng.standard_normal(shape) * 4

    def forward(x):
        picked = jnp.take_along_axis(x, labels[..., None], axis=-1)[..., 0]
        return (jax.nn.logsumexp(x, axis=-1) - picked,)

    y_shape = shape[:-1]
    lines = [f"%y = constant {literal(labels)} : {ttype(y_shape, dtype)}",
             f"%out0 = softmax_cross_entropy %in0, %y : {ttype(y_shape)}"]
    return f"softmax_cross_entropy {shape} {dtype} labels", [x], forward, lines, [y_shape]


def main():
    families = [
        ("gather", gather_case),
        ("scatter_add", scatter_add_case),
        ("layer_norm", layer_norm_case),
        ("gelu_erf", lambda r: gelu_case(r, False)),
        ("gelu_tanh", lambda r: gelu_case(r, True)),
        ("sparse_cross_entropy", sparse_cross_entropy_case),
    ]
    generate("gen_transformer_jax.py", "JAXTransformer", 20, 6, families)


if __name__ == "__main__":
    sys.exit(main())
