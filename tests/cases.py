"""Named edge cases and random problems shared by the kernel tests (CPU now, CUDA later).

Each case is a small problem that has broken some convolution kernel somewhere: a single
tile, partial tiles, channel tails, strides with padding, even filters with 'same'.
"""

import numpy as np
from hypothesis import strategies as st

from convbench.spec import ConvSpec

CASES = {
    "1x1 image": ConvSpec(c=3, h=1, k=4, r=1),
    "1x1 image, 3x3 same": ConvSpec(c=3, h=1, k=5, r=3, padding="same"),
    "one f23 tile": ConvSpec(c=4, h=4, k=4, r=3),
    "one f43 tile": ConvSpec(c=4, h=6, k=4, r=3),
    "one f63 tile": ConvSpec(c=4, h=8, k=4, r=3),
    "partial tiles": ConvSpec(c=5, h=7, w=9, k=6, r=3, padding="same"),
    "partial tiles, valid": ConvSpec(c=3, h=11, w=10, k=2, r=3),
    "tail channels": ConvSpec(c=13, h=10, k=19, r=3, padding=1),
    "wide channels": ConvSpec(c=64, h=15, k=72, r=3, padding=1),
    "1x1 pointwise": ConvSpec(c=24, h=9, w=7, k=40, r=1),
    "1x1 stride 2": ConvSpec(c=16, h=9, k=8, r=1, stride=2),
    "stride 2 pad 1": ConvSpec(c=8, h=9, k=8, r=3, stride=2, padding=1),
    "stride (2,3)": ConvSpec(c=4, h=13, w=14, k=6, r=3, s=5, stride=(2, 3), padding=(1, 2)),
    "even kernel same": ConvSpec(c=4, h=10, k=6, r=4, padding="same"),
    "even kernel same stride 2": ConvSpec(c=4, h=11, k=3, r=2, padding="same", stride=2),
    "asymmetric padding": ConvSpec(c=5, h=8, w=7, k=4, r=3, padding=(0, 2, 1, 0)),
    "1x7": ConvSpec(c=6, h=9, k=5, r=1, s=7, padding=(0, 3)),
    "7x1": ConvSpec(c=6, h=9, k=5, r=7, s=1, padding=(3, 0)),
    "5x5 valid": ConvSpec(c=3, h=12, k=7, r=5),
    "dilation 2": ConvSpec(c=4, h=12, k=4, r=3, dilation=2, padding="same"),
    "dilation (2,1) stride 2": ConvSpec(c=4, h=13, k=4, r=3, s=3, dilation=(2, 1), stride=2),
    "groups 2": ConvSpec(c=8, h=9, k=6, r=3, groups=2, padding=1),
    "groups 4 stride 2": ConvSpec(c=8, h=10, k=12, r=3, groups=4, stride=2),
    "depthwise": ConvSpec(c=6, h=9, k=6, r=3, groups=6, padding=1),
    "depthwise multiplier 2": ConvSpec(c=6, h=9, k=12, r=3, groups=6, padding=1),
    "depthwise stride 2 dilation 2": ConvSpec(c=5, h=14, k=5, r=3, groups=5, stride=2,
                                              dilation=2, padding=2),
    "batch 3": ConvSpec(n=3, c=5, h=8, k=7, r=3, padding=1),
    "batch 3 depthwise": ConvSpec(n=3, c=4, h=7, k=4, r=5, groups=4, padding="same"),
    "float64": ConvSpec(n=2, c=6, h=9, k=5, r=3, padding=1, dtype="float64"),
    "float64 depthwise": ConvSpec(c=4, h=9, k=8, r=3, groups=4, dtype="float64"),
    "large filter": ConvSpec(c=3, h=20, w=17, k=4, r=11, padding="same"),
    "padding beyond the filter": ConvSpec(c=3, h=7, w=6, k=4, r=1, stride=2, padding=1),
    "2x2 stride 2 (up-convolution)": ConvSpec(c=6, h=8, w=10, k=4, r=2, stride=2),
    "4x4 stride 2 pad 1": ConvSpec(n=2, c=5, h=8, k=3, r=4, stride=2, padding=1),
}


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
