"""Depthwise's 3x3 strips (`_rows3`): which problems they take, and exact results on the
paddings they take at stride 2 (any bottom and right padding, odd and even planes)."""

import numpy as np
import pytest

from convbench.spec import ConvSpec
from convbench_kernels.cpu import depthwise
from tests.cases import random_arrays
from tests.kernels.test_algorithms import reference, relative_error


def plan_kernel(spec):
    """The kernel `prepare` runs for ``spec`` with the installed or default parameters."""
    kernel, _ = depthwise._strategy(np.zeros(spec.weight_shape, spec.dtype), spec,
                                    spec.k // spec.c, depthwise._params())
    return kernel


@pytest.mark.parametrize(("stride", "padding", "strips"), [
    (1, (1, 1, 1, 1), True),
    (2, (1, 1, 1, 1), True),
    (2, (1, 0, 1, 0), True),   # TensorFlow's "same" on an even plane
    (2, (1, 2, 1, 0), True),
    (1, (1, 0, 1, 0), False),  # stride 1 strips write a plane of the input's size
    (1, (0, 0, 0, 0), False),
    (2, (0, 1, 0, 1), False),  # column -1 is not padding here: the strips would read it
    (2, (2, 2, 2, 2), False),
])
def test_strips_take_3x3_with_top_and_left_padding_1(stride, padding, strips):
    spec = ConvSpec(c=4, h=20, k=4, r=3, stride=stride, padding=padding, groups=4)
    assert (plan_kernel(spec) is depthwise._rows3) is strips


def test_strips_leave_dilation_and_other_filters():
    for spec in (ConvSpec(c=4, h=20, k=4, r=3, stride=2, padding=(1, 1), dilation=2, groups=4),
                 ConvSpec(c=4, h=20, k=4, r=5, stride=2, padding=(1, 1), groups=4)):
        assert plan_kernel(spec) is not depthwise._rows3


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("h", "w", "padding"), [
    (28, 28, (1, 0, 1, 0)), (27, 27, (1, 0, 1, 0)), (13, 22, (1, 0, 1, 2)),
    (9, 40, (1, 3, 1, 1)), (1, 1, (1, 1, 1, 1)), (2, 35, (1, 2, 1, 0)),
])
def test_stride_2_strips_match_the_reference(h, w, padding, dtype):
    spec = ConvSpec(n=2, c=3, h=h, w=w, k=6, r=3, stride=2, padding=padding, groups=3,
                    dtype=dtype)
    assert plan_kernel(spec) is depthwise._rows3
    x, wt = random_arrays(spec)
    out = np.full(spec.output_shape, np.nan, dtype=spec.dtype)
    depthwise.prepare(wt, spec)(x, out)
    err = relative_error(out, reference(spec, x, wt))
    assert np.isfinite(out).all() and err <= {"float32": 1e-6, "float64": 1e-14}[dtype], err
