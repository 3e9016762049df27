#!/usr/bin/env python3
"""The vision ops against JAX: random convolutions, pools, batch norms and strided slices, with
their outputs and vector-Jacobian products computed by JAX in float64, written as test cases that
Tests/TTTrainTests/VisionJAXTests.swift runs through ttfc's interpreter, autodiff and compiler.

  tools/gen_vision_jax.py [--out DIR] [--seed N] [--count N]

Each case NAME is NAME.ttir (a module with @forward(inputs) -> outputs and @loss(inputs,
cotangents) = sum of outputs times cotangents) and NAME.npz (in<i>, ct<k>, out<k>, grad<i> for
every input i). The cases in Tests/TTTrainTests/JAXVision/ were written with the default seed;
tools/test writes a fresh set with another seed and runs the Swift test on it
(TTFC_JAX_VISION_CASES=DIR).

JAX's own spellings are the reference: lax.conv_general_dilated (NHWC, HWIO, feature_group_count,
rhs_dilation, padding "SAME"/"VALID"/pairs), lax.reduce_window (max; sum divided by the window
size or by the count of input elements), batch norm written in jnp (biased variance), lax.slice
with strides. SAME is passed to JAX as the string, so TensorFlow's SAME rule is checked too."""
import sys

import numpy as np

import jax
import jax.numpy as jnp
from jax import lax

from jax_cases import generate, ttype


def jax_padding(padding, pads):
    if padding == "EXPLICIT":
        return [(pads[0], pads[1]), (pads[2], pads[3])]
    return padding


def window_attributes(strides, padding, pads):
    text = f"strides = [{strides[0]}, {strides[1]}], padding = \"{padding}\""
    if padding == "EXPLICIT":
        text += ", pads = [" + ", ".join(map(str, pads)) + "]"
    return text


def out_size(n, eff, stride, padding, lo, hi):
    if padding == "SAME":
        return -(-n // stride)
    return (n + lo + hi - eff) // stride + 1 if n + lo + hi >= eff else 0


def random_padding(rng, window_eff, pool):
    padding = ["VALID", "SAME", "EXPLICIT"][rng.integers(0, 3)]
    limit = [e - 1 for e in window_eff] if pool else [3, 3]
    pads = [int(rng.integers(0, limit[a // 2] + 1)) for a in range(4)]
    return padding, pads


def conv_case(rng):
    while True:
        groups = int(rng.integers(1, 4))
        cg = 1 if rng.random() < 0.3 else int(rng.integers(1, 4))   # depthwise-style when cg == 1
        cin, cout = groups * cg, groups * int(rng.integers(1, 4))
        n, h, w = int(rng.integers(1, 4)), int(rng.integers(1, 10)), int(rng.integers(1, 10))
        kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        strides = [int(rng.integers(1, 4)), int(rng.integers(1, 4))]
        dilations = [int(rng.integers(1, 4)), int(rng.integers(1, 4))]
        eff = [(kh - 1) * dilations[0] + 1, (kw - 1) * dilations[1] + 1]
        padding, pads = random_padding(rng, eff, pool=False)
        if padding != "EXPLICIT":
            pads = [0, 0, 0, 0]
        oh = out_size(h, eff[0], strides[0], padding, pads[0], pads[1])
        ow = out_size(w, eff[1], strides[1], padding, pads[2], pads[3])
        if oh >= 1 and ow >= 1:
            break
    x = rng.standard_normal((n, h, w, cin))
    f = rng.standard_normal((kh, kw, cg, cout))

    def forward(x, f):
        return (lax.conv_general_dilated(x, f, window_strides=strides, padding=jax_padding(padding, pads),
                                         rhs_dilation=dilations, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                         feature_group_count=groups, precision=lax.Precision.HIGHEST),)

    attrs = window_attributes(strides, padding, pads) + f", dilations = [{dilations[0]}, {dilations[1]}], groups = {groups}"
    y_shape = (n, oh, ow, cout)
    lines = [f"%out0 = conv2d %in0, %in1 {{{attrs}}} : {ttype(y_shape)}"]
    return f"conv2d g{groups} k{kh}x{kw} s{strides} d{dilations} {padding}", [x, f], forward, lines, [y_shape]


def pool_case(rng, kind):
    n, h, w, c = int(rng.integers(1, 4)), int(rng.integers(1, 9)), int(rng.integers(1, 9)), int(rng.integers(1, 4))
    kh, kw = int(rng.integers(1, min(h, 4) + 1)), int(rng.integers(1, min(w, 4) + 1))
    strides = [int(rng.integers(1, 4)), int(rng.integers(1, 4))]
    padding, pads = random_padding(rng, [kh, kw], pool=True)
    if padding != "EXPLICIT":
        pads = [0, 0, 0, 0]
    include = bool(rng.integers(0, 2))
    ties = kind == "max" and rng.random() < 0.4   # small integers: equal maxima in most windows
    x = rng.integers(-2, 3, (n, h, w, c)).astype(np.float64) if ties else rng.standard_normal((n, h, w, c))
    dims, wstrides = (1, kh, kw, 1), (1, strides[0], strides[1], 1)
    jpad = padding if padding != "EXPLICIT" else [(0, 0), (pads[0], pads[1]), (pads[2], pads[3]), (0, 0)]

    def forward(x):
        if kind == "max":
            return (lax.reduce_window(x, -jnp.inf, lax.max, dims, wstrides, jpad),)
        total = lax.reduce_window(x, 0.0, lax.add, dims, wstrides, jpad)
        if include:
            return (total / (kh * kw),)
        count = lax.reduce_window(jnp.ones((1, h, w, 1)), 0.0, lax.add, dims, wstrides, jpad)
        return (total / count,)

    y_shape = jax.eval_shape(forward, x)[0].shape
    attrs = window_attributes(strides, padding, pads) + f", window = [{kh}, {kw}]"
    if kind == "avg":
        attrs += f", count_include_pad = {'true' if include else 'false'}"
    lines = [f"%out0 = {kind}_pool %in0 {{{attrs}}} : {ttype(y_shape)}"]
    return f"{kind}_pool k{kh}x{kw} s{strides} {padding}{' with ties' if ties else ''}", [x], forward, lines, [y_shape]


def batch_norm_training_case(rng):
    rank = int(rng.integers(2, 5))
    shape = tuple(int(rng.integers(1, 5)) for _ in range(rank - 1)) + (int(rng.integers(1, 5)),)
    if np.prod(shape[:-1]) < 2:
        shape = (2,) + shape[1:]
    eps = float(10.0 ** rng.integers(-5, -1))
    x = rng.standard_normal(shape) * 2 + 1
    scale, offset = rng.standard_normal(shape[-1]), rng.standard_normal(shape[-1])
    axes = tuple(range(rank - 1))

    def forward(x, scale, offset):
        mean = jnp.mean(x, axis=axes)
        var = jnp.mean((x - mean) ** 2, axis=axes)
        return ((x - mean) / jnp.sqrt(var + eps) * scale + offset, mean, var)

    c = shape[-1]
    lines = [f"%out0, %out1, %out2 = batch_norm_training %in0, %in1, %in2 {{epsilon = {eps!r}}} : {ttype(shape)}, f64[{c}], f64[{c}]"]
    return f"batch_norm_training {shape}", [x, scale, offset], forward, lines, [shape, (c,), (c,)]


def batch_norm_inference_case(rng):
    rank = int(rng.integers(1, 5))
    shape = tuple(int(rng.integers(1, 5)) for _ in range(rank))
    c = shape[-1]
    eps = float(10.0 ** rng.integers(-5, -1))
    args = [rng.standard_normal(shape), rng.standard_normal(c), rng.standard_normal(c), rng.standard_normal(c),
            rng.uniform(0.2, 2.0, c)]

    def forward(x, scale, offset, mean, var):
        return ((x - mean) / jnp.sqrt(var + eps) * scale + offset,)

    lines = [f"%out0 = batch_norm_inference %in0, %in1, %in2, %in3, %in4 {{epsilon = {eps!r}}} : {ttype(shape)}"]
    return f"batch_norm_inference {shape}", args, forward, lines, [shape]


def strided_slice_case(rng):
    rank = int(rng.integers(1, 4))
    shape = tuple(int(rng.integers(1, 9)) for _ in range(rank))
    starts, limits, strides = [], [], []
    for d in shape:
        s = int(rng.integers(0, d))
        starts.append(s)
        limits.append(int(rng.integers(s + 1, d + 1)))
        strides.append(int(rng.integers(1, 5)))
    x = rng.standard_normal(shape)

    def forward(x):
        return (lax.slice(x, starts, limits, strides),)

    y_shape = jax.eval_shape(forward, x)[0].shape
    axes = list(range(rank))
    lines = [f"%out0 = slice %in0 {{axes = {axes}, starts = {starts}, limits = {limits}, strides = {strides}}} : {ttype(y_shape)}"]
    return f"slice {shape} {starts}:{limits}:{strides}", [x], forward, lines, [y_shape]


def main():
    families = [
        ("conv2d", conv_case),
        ("max_pool", lambda r: pool_case(r, "max")),
        ("avg_pool", lambda r: pool_case(r, "avg")),
        ("batch_norm_training", batch_norm_training_case),
        ("batch_norm_inference", batch_norm_inference_case),
        ("strided_slice", strided_slice_case),
    ]
    generate("gen_vision_jax.py", "JAXVision", 19, 12, families)


if __name__ == "__main__":
    sys.exit(main())
