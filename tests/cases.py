"""Named edge cases (`convbench.cases.CASES`, in the package because `convbench compile`
compiles on them) and random problems shared by the kernel tests (CPU and CUDA).
"""

import numpy as np
from hypothesis import strategies as st

from convbench.cases import CASES  # noqa: F401  (the tests import them from here)
from convbench.spec import ConvSpec


def relative_error(out, ref, a=None, b=None) -> float:
    """max|out - ref| / max|ref|, or over max|a| * max|b| (the operands) where that is larger.

    A transform-based kernel spreads its round-off over the whole output at the scale of its
    operands: where every tap of every output falls in the padding the exact result is zero,
    and an FFT's 1e-16 against max|ref| = 0 would read as an infinite error.  For ordinary
    problems max|ref| is the larger of the two and decides.
    """
    scale = float(np.max(np.abs(ref)))
    if a is not None and b is not None:
        scale = max(scale, float(np.max(np.abs(a))) * float(np.max(np.abs(b))))
    return float(np.max(np.abs(out - ref)) / max(scale, 1e-30))


def random_arrays(spec: ConvSpec, seed: int = 0):
    """Seeded standard-normal input and weights of ``spec``'s shapes and dtype."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(spec.input_shape).astype(spec.dtype)
    w = rng.standard_normal(spec.weight_shape).astype(spec.dtype)
    return x, w


def separable_weights(spec: ConvSpec, multiplier: int = 1, seed: int = 1):
    """Seeded (w_depthwise, w_pointwise) for the separable operator replacing ``spec``."""
    rng = np.random.default_rng(seed)
    cm = spec.c * multiplier
    wd = rng.standard_normal((cm, 1, spec.r, spec.s)).astype(spec.dtype)
    wp = rng.standard_normal((spec.k, cm, 1, 1)).astype(spec.dtype)
    return wd, wp


@st.composite
def problems(draw):
    """Small random problems, biased towards the shapes special algorithms support."""
    kind = draw(st.sampled_from(["general", "winograd", "depthwise"]))
    n = draw(st.integers(1, 2))
    h = draw(st.integers(1, 19))
    w = draw(st.integers(1, 19))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    if kind == "winograd":
        c, k = draw(st.integers(1, 9)), draw(st.integers(1, 9))
        r = s = 3
        stride = dilation = groups = 1
    elif kind == "depthwise":
        c = draw(st.integers(1, 6))
        k = c * draw(st.integers(1, 2))
        r, s = draw(st.integers(1, 5)), draw(st.integers(1, 5))
        stride, dilation = draw(st.integers(1, 2)), draw(st.integers(1, 2))
        groups = c
    else:
        groups = draw(st.integers(1, 2))
        c, k = groups * draw(st.integers(1, 5)), groups * draw(st.integers(1, 5))
        r, s = draw(st.integers(1, 6)), draw(st.integers(1, 6))
        stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.one_of(st.sampled_from(["same", "valid"]), st.integers(0, 2),
                             st.tuples(*[st.integers(0, 3)] * 4)))
    # a filter larger than the padded input is invalid: grow the image until it fits
    spec = None
    while spec is None:
        try:
            spec = ConvSpec(n=n, c=c, h=h, w=w, k=k, r=r, s=s, stride=stride, padding=padding,
                            dilation=dilation, groups=groups, dtype=dtype)
        except ValueError:
            h, w = h + 2, w + 2
    return spec
