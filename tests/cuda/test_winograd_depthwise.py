"""CUDA Winograd F(2,3)/F(4,3)/F(6,3), depthwise and separable against the float64 oracle.

Tiny named edge cases (the simulator runs every GPU thread as a Python thread); outputs are
filled with NaN before the launch, so an element a kernel forgets to write fails the test.
"""

import os

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    from numba import cuda

    if not cuda.is_available():
        pytest.skip("needs a CUDA GPU or NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)

import numpy as np  # noqa: E402
from numba import cuda  # noqa: E402

from convbench.spec import ConvSpec  # noqa: E402
from convbench_kernels import contract  # noqa: E402
from convbench_kernels.cpu import depthwise as cpu_depthwise  # noqa: E402
from convbench_kernels.cpu import winograd as cpu_winograd  # noqa: E402
from convbench_kernels.cuda import depthwise, winograd  # noqa: E402
from convbench_kernels.reference import composed_weight, reference_conv2d  # noqa: E402

WINOGRAD_CASES = {
    "one f23 tile 4x4": ConvSpec(c=4, h=4, k=4, r=3),
    "one f43 tile 6x6": ConvSpec(c=4, h=6, k=4, r=3),
    "one f63 tile 8x8": ConvSpec(c=4, h=8, k=4, r=3),
    "partial tiles 7x5, padding 1": ConvSpec(c=3, h=7, w=5, k=4, r=3, padding=1),
    "tail channels, padding 0": ConvSpec(c=11, h=5, k=7, r=3),
    "asymmetric padding": ConvSpec(c=3, h=6, w=5, k=4, r=3, padding=(0, 2, 1, 0)),
    "groups 2": ConvSpec(c=4, h=5, k=6, r=3, groups=2, padding=1),
    "batch 2": ConvSpec(n=2, c=3, h=8, k=5, r=3, padding=1),
    "float64": ConvSpec(c=3, h=5, w=6, k=4, r=3, padding=1, dtype="float64"),
}

DEPTHWISE_CASES = {
    "depthwise": ConvSpec(c=3, h=6, k=3, r=3, groups=3, padding=1),
    "multiplier 2": ConvSpec(c=3, h=6, k=6, r=3, groups=3, padding=1),
    "stride 2 dilation 2": ConvSpec(c=3, h=9, k=3, r=3, groups=3, stride=2, dilation=2,
                                    padding=2),
    "1x1 image 3x3 same": ConvSpec(c=2, h=1, k=2, r=3, groups=2, padding="same"),
    "even kernel same stride 2, 2x3": ConvSpec(c=2, h=5, w=6, k=4, r=2, s=3, groups=2,
                                               stride=2, padding="same"),
    "asymmetric padding": ConvSpec(c=2, h=5, w=4, k=2, r=3, groups=2, padding=(0, 2, 1, 0)),
    "batch 2 float64": ConvSpec(n=2, c=2, h=5, k=4, r=3, groups=2, padding=1,
                                dtype="float64"),
}

SEPARABLE_CASES = {  # (spec of the replaced convolution, multiplier)
    "multiplier 1": (ConvSpec(c=3, h=6, k=5, r=3, padding=1), 1),
    "multiplier 2, stride 2, batch 2": (ConvSpec(n=2, c=3, h=7, k=4, r=3, stride=2,
                                                 padding=1), 2),
    "multiplier 2, float64": (ConvSpec(c=2, h=5, w=4, k=3, r=3, padding="same",
                                       dtype="float64"), 2),
}


def _arrays(spec, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(spec.input_shape).astype(spec.dtype)
    w = rng.standard_normal(spec.weight_shape).astype(spec.dtype)
    return x, w


def _reference(spec, x, w, groups=None):
    return reference_conv2d(x, w, stride=(spec.sh, spec.sw), pads=spec.pads,
                            dilation=(spec.dh, spec.dw),
                            groups=spec.groups if groups is None else groups)


def _run(compute, spec, x):
    """compute on device copies of x and a NaN-filled output; the output on the host."""
    dx = cuda.to_device(x)
    dout = cuda.to_device(np.full(spec.output_shape, np.nan, dtype=spec.dtype))
    compute(dx, dout)
    got = dout.copy_to_host()
    assert got.dtype == np.dtype(spec.dtype)
    assert not np.isnan(got).any(), "output elements left unwritten"
    return got


def _check(got, ref, spec, tol32):
    tol = 1e-12 if spec.dtype == "float64" else tol32
    err = np.abs(got - ref).max() / np.abs(ref).max()
    assert err <= tol, f"max rel error {err:.2e} > {tol:.0e}"


def test_supports_is_the_contract_rule_of_both_devices():
    assert winograd.supports is cpu_winograd.supports is contract.winograd_3x3
    assert depthwise.supports is cpu_depthwise.supports is contract.depthwise
    assert depthwise.supports_separable is cpu_depthwise.supports_separable is contract.separable
    assert winograd.supports(ConvSpec(c=2, h=6, k=2, r=3, stride=2)) is not None
    with pytest.raises(ValueError):
        winograd.prepare_f23(np.zeros((2, 2, 5, 5), np.float32), ConvSpec(c=2, h=6, k=2, r=5))


@pytest.mark.parametrize("m", [2, 4, 6], ids=["f23", "f43", "f63"])
@pytest.mark.parametrize("name", list(WINOGRAD_CASES))
def test_winograd(name, m):
    spec = WINOGRAD_CASES[name]
    assert winograd.supports(spec) is None
    x, w = _arrays(spec)
    prepare = {2: winograd.prepare_f23, 4: winograd.prepare_f43, 6: winograd.prepare_f63}[m]
    got = _run(prepare(w, spec), spec, x)
    _check(got, _reference(spec, x, w), spec, {2: 1e-6, 4: 1e-5, 6: 4e-5}[m])


@pytest.mark.parametrize("name", list(DEPTHWISE_CASES))
def test_depthwise(name):
    spec = DEPTHWISE_CASES[name]
    assert depthwise.supports(spec) is None
    x, w = _arrays(spec)
    got = _run(depthwise.prepare(w, spec), spec, x)
    _check(got, _reference(spec, x, w), spec, 1e-6)


@pytest.mark.parametrize("name", list(SEPARABLE_CASES))
def test_separable(name):
    spec, mult = SEPARABLE_CASES[name]
    assert depthwise.supports_separable(spec) is None
    rng = np.random.default_rng(1)
    x = rng.standard_normal(spec.input_shape).astype(spec.dtype)
    w_dw = rng.standard_normal((spec.c * mult, 1, spec.r, spec.s)).astype(spec.dtype)
    w_pw = rng.standard_normal((spec.k, spec.c * mult, 1, 1)).astype(spec.dtype)
    compute = depthwise.prepare_separable((w_dw, w_pw), spec)
    assert [name for name, _ in compute.phases] == ["depthwise", "pointwise"]
    got = _run(compute, spec, x)
    W = composed_weight(w_dw, w_pw, mult)
    _check(got, _reference(spec, x, W, groups=1), spec, 1e-6)
