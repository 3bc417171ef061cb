"""The float64 reference against SciPy and against the definition written as plain loops."""

import itertools

import numpy as np
import pytest
from scipy.signal import correlate2d

from convbench_kernels.reference import (
    reference_conv2d,
    reference_conv2d_input,
    reference_conv2d_weight,
)


@pytest.mark.parametrize(
    ("h", "w", "r", "s", "pads"),
    [(7, 9, 3, 3, (0, 0, 0, 0)), (5, 5, 5, 5, (2, 2, 2, 2)), (8, 6, 1, 7, (0, 0, 3, 3)),
     (6, 11, 4, 2, (1, 2, 0, 1)), (1, 1, 1, 1, (0, 0, 0, 0)), (3, 4, 3, 3, (1, 1, 1, 1))],
)
def test_single_channel_matches_scipy_correlate2d(h, w, r, s, pads):
    rng = np.random.default_rng(h * 100 + w)
    x = rng.standard_normal((1, 1, h, w))
    f = rng.standard_normal((1, 1, r, s))
    pt, pb, pl, pr = pads
    want = correlate2d(np.pad(x[0, 0], ((pt, pb), (pl, pr))), f[0, 0], mode="valid")
    got = reference_conv2d(x, f, pads=pads)
    np.testing.assert_allclose(got[0, 0], want, rtol=1e-12, atol=1e-12)


def _loops(x, w, stride, pads, dilation, groups):
    """The definition, one output element at a time."""
    n, c, h, wd = x.shape
    k, cg, r, s = w.shape
    (sh, sw), (dh, dw), (pt, pb, pl, pr) = stride, dilation, pads
    oh = (h + pt + pb - dh * (r - 1) - 1) // sh + 1
    ow = (wd + pl + pr - dw * (s - 1) - 1) // sw + 1
    kg = k // groups
    out = np.zeros((n, k, oh, ow))
    for b, o, i, j in itertools.product(range(n), range(k), range(oh), range(ow)):
        g = o // kg
        for ci, p, q in itertools.product(range(cg), range(r), range(s)):
            y, xx = i * sh - pt + p * dh, j * sw - pl + q * dw
            if 0 <= y < h and 0 <= xx < wd:
                out[b, o, i, j] += x[b, g * cg + ci, y, xx] * w[o, ci, p, q]
    return out


@pytest.mark.parametrize(
    ("shape_x", "shape_w", "stride", "pads", "dilation", "groups"),
    [
        ((2, 3, 6, 7), (4, 3, 3, 2), (1, 1), (1, 0, 2, 1), (1, 1), 1),
        ((1, 4, 9, 8), (6, 2, 3, 3), (2, 3), (1, 1, 1, 1), (2, 1), 2),
        ((1, 3, 5, 5), (6, 1, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 3),
    ],
)
def test_multichannel_matches_the_definition(shape_x, shape_w, stride, pads, dilation, groups):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape_x)
    w = rng.standard_normal(shape_w)
    got = reference_conv2d(x, w, stride=stride, pads=pads, dilation=dilation, groups=groups)
    np.testing.assert_allclose(got, _loops(x, w, stride, pads, dilation, groups), rtol=1e-12,
                               atol=1e-12)


# The gradient oracles: adjoints of the forward one, and its finite differences.
GEOMETRIES = [  # (n, c, h, w, k, r, s, stride, pads, dilation, groups)
    (1, 3, 7, 9, 4, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),
    (2, 4, 9, 8, 6, 3, 2, (2, 2), (1, 0, 2, 1), (1, 1), 2),
    (1, 2, 10, 7, 3, 2, 3, (3, 2), (0, 0, 0, 0), (2, 1), 1),
    (2, 6, 8, 8, 6, 5, 5, (2, 1), (2, 2, 2, 2), (1, 1), 6),
    (1, 3, 6, 6, 2, 1, 1, (2, 2), (1, 1, 1, 1), (1, 1), 1),
]


def _operands(g, seed=0):
    n, c, h, w, k, r, s, stride, pads, dilation, groups = g
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((k, c // groups, r, s))
    y = reference_conv2d(x, wt, stride, pads, dilation, groups)
    dy = rng.standard_normal(y.shape)
    return x, wt, dy, dict(stride=stride, pads=pads, dilation=dilation, groups=groups)


@pytest.mark.parametrize("g", GEOMETRIES)
def test_gradients_are_the_adjoints_of_the_forward_convolution(g):
    x, w, dy, geo = _operands(g)
    forward = np.vdot(reference_conv2d(x, w, **geo), dy)
    dx = reference_conv2d_input(dy, w, x.shape[2:], **geo)
    dw = reference_conv2d_weight(x, dy, w.shape[2:], **geo)
    assert dx.shape == x.shape and dw.shape == w.shape
    assert np.vdot(x, dx) == pytest.approx(forward, rel=1e-12)
    assert np.vdot(w, dw) == pytest.approx(forward, rel=1e-12)


@pytest.mark.parametrize("g", GEOMETRIES[:3])
def test_gradients_match_finite_differences(g):
    """The loss <conv(x, w), dy> is linear in x and in w: a central difference is exact up
    to rounding, element by element."""
    x, w, dy, geo = _operands(g, seed=1)
    dx = reference_conv2d_input(dy, w, x.shape[2:], **geo)
    dw = reference_conv2d_weight(x, dy, w.shape[2:], **geo)
    loss = lambda xx, ww: np.vdot(reference_conv2d(xx, ww, **geo), dy)  # noqa: E731
    rng = np.random.default_rng(2)
    for _ in range(6):
        i = tuple(int(rng.integers(d)) for d in x.shape)
        e = np.zeros_like(x)
        e[i] = 0.5
        assert (loss(x + e, w) - loss(x - e, w)) == pytest.approx(dx[i], abs=1e-9)
        j = tuple(int(rng.integers(d)) for d in w.shape)
        e = np.zeros_like(w)
        e[j] = 0.5
        assert (loss(x, w + e) - loss(x, w - e)) == pytest.approx(dw[j], abs=1e-9)
