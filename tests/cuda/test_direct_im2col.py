"""The CUDA direct and im2col families against the float64 reference on tiny edge cases.

Tiny because the CUDA simulator runs every GPU thread as a Python thread.  Outputs are
filled with NaN before each launch, so an element a kernel fails to write fails.
"""

import os

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    from numba import cuda

    if not cuda.is_available():
        pytest.skip("needs a CUDA GPU or NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)

import numpy as np
from numba import cuda

import convbench_kernels.cpu.direct
import convbench_kernels.cpu.im2col
from convbench.spec import ConvSpec
from convbench_kernels.contract import every_problem
from convbench_kernels.cuda import direct, im2col
from convbench_kernels.reference import reference_conv2d

FAMILIES = {"direct": direct, "im2col": im2col}
TOL = {"float32": 1e-5, "float64": 1e-12}  # max|out - ref| / max|ref|

CASES = {
    "1x1 image": ConvSpec(c=3, h=1, k=4, r=1),
    "1x1 image, 3x3 same": ConvSpec(c=2, h=1, k=5, r=3, padding="same"),
    "partial tiles": ConvSpec(c=3, h=5, w=6, k=5, r=3, padding="same"),
    "tail channels": ConvSpec(c=5, h=4, k=7, r=3, padding=1),
    "1x1 pointwise": ConvSpec(c=6, h=3, w=4, k=5, r=1),
    "1x1 stride 2": ConvSpec(c=3, h=5, k=4, r=1, stride=2),
    "stride 2 pad 1": ConvSpec(c=3, h=7, k=4, r=3, stride=2, padding=1),
    "even kernel same": ConvSpec(c=2, h=6, k=3, r=4, padding="same"),
    "asymmetric padding": ConvSpec(c=2, h=5, w=4, k=3, r=3, padding=(0, 2, 1, 0)),
    "1x3": ConvSpec(c=2, h=5, k=3, r=1, s=3, padding=(0, 1)),
    "3x1": ConvSpec(c=2, h=5, k=3, r=3, s=1, padding=(1, 0)),
    "dilation 2": ConvSpec(c=2, h=7, k=3, r=3, dilation=2, padding="same"),
    "stride (2,3) dilation (2,1)": ConvSpec(c=2, h=8, w=9, k=3, r=3, s=2, stride=(2, 3),
                                            dilation=(2, 1), padding=(1, 0)),
    "groups 2": ConvSpec(c=4, h=5, k=10, r=3, groups=2, padding=1),
    "depthwise": ConvSpec(c=3, h=5, k=3, r=3, groups=3, padding=1),
    "batch 2 groups 2 pointwise": ConvSpec(n=2, c=4, h=3, k=6, r=1, groups=2),
    "batch 2": ConvSpec(n=2, c=3, h=5, k=4, r=3, padding=1),
}


def run(family, spec, seed=0):
    """(out on the host, float64 reference) for ``family`` on ``spec``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(spec.input_shape).astype(spec.dtype)
    w = rng.standard_normal(spec.weight_shape).astype(spec.dtype)
    d_out = cuda.to_device(np.full(spec.output_shape, np.nan, dtype=spec.dtype))
    family.prepare(w, spec)(cuda.to_device(x), d_out)
    ref = reference_conv2d(x, w, stride=(spec.sh, spec.sw), pads=spec.pads,
                           dilation=(spec.dh, spec.dw), groups=spec.groups)
    return d_out.copy_to_host(), ref


def check(family, spec):
    out, ref = run(family, spec)
    assert out.dtype == spec.dtype and out.shape == ref.shape
    assert np.isfinite(out).all(), "the kernel left elements unwritten (NaN)"
    err = float(np.abs(out - ref).max() / max(np.abs(ref).max(), 1e-30))
    assert err <= TOL[spec.dtype], f"{spec.id}: error {err:.3g}"


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", FAMILIES)
def test_named_case(name, case):
    check(FAMILIES[name], CASES[case])


@pytest.mark.parametrize("case", ["partial tiles", "stride (2,3) dilation (2,1)", "groups 2",
                                  "batch 2 groups 2 pointwise"])
@pytest.mark.parametrize("name", FAMILIES)
def test_float64(name, case):
    check(FAMILIES[name], CASES[case].with_(dtype="float64"))


def test_supports_is_the_contract_rule_of_both_devices():
    assert direct.supports is convbench_kernels.cpu.direct.supports is every_problem
    assert im2col.supports is convbench_kernels.cpu.im2col.supports is every_problem
    assert direct.supports(CASES["groups 2"]) is None and im2col.supports(CASES["1x3"]) is None


def test_direct_grid_stride(monkeypatch):
    """With fewer threads than work items, threads loop over the rest."""
    monkeypatch.setattr(direct, "MAX_BLOCKS", 1)
    check(direct, ConvSpec(n=2, c=2, h=9, k=5, r=3, padding=1))  # 2 * 2 blocks * 81 > 128


@pytest.mark.parametrize("case, products, parts", [
    ("tail channels", 18, 2),  # 5 channels: parts of 3 and 2
    ("tail channels", 9, 5),  # one channel a part
    ("groups 2", 9, 2), ("stride (2,3) dilation (2,1)", 1, 2), ("batch 2", 9, 3)])
def test_direct_split_over_channels(monkeypatch, case, products, parts):
    """A layer too small to fill the GPU splits each sum into parts over the input channels,
    added up in part order by a second kernel; the workspace holds the partial sums."""
    spec = CASES[case]
    monkeypatch.setattr(direct, "min_blocks", lambda sms=None: 1 << 20)
    monkeypatch.setattr(direct, "MIN_PART_PRODUCTS", products)
    assert direct._parts(spec) == parts
    assert [kernel for kernel, *_ in direct.launches(spec)] == ["direct", "sum_parts"]
    blocked = spec.groups * -(-spec.kg // direct.channel_block(spec.kg)) * direct.channel_block(
        spec.kg) * spec.cg * spec.r * spec.s
    assert direct.workspace(spec) == (blocked + parts * spec.n * spec.k * spec.oh * spec.ow) * 4
    check(direct, spec)
    check(direct, spec.with_(dtype="float64"))


def test_direct_splits_only_sums_long_enough():
    """The parts of a split sum add up at least MIN_PART_PRODUCTS products each, and a layer
    that fills the GPU is not split."""
    small = ConvSpec(n=1, c=512, h=7, k=512, r=3, padding=1)
    assert direct._parts(small, sms=132) == 6  # 6272 items of 4 channels -> 294 full blocks
    assert direct._parts(small.with_(c=8, r=1, s=1, padding=0), sms=132) == 1  # 8 products
    assert direct._parts(small.with_(n=32), sms=132) == 1


def test_im2col_chunks_and_grid_stride(monkeypatch):
    """Column matrices for 2 of 3 images at a time (a short last chunk), and fewer unfolding
    threads than column elements."""
    spec = ConvSpec(n=3, c=2, h=4, k=4, r=3, padding=1, groups=2)
    monkeypatch.setattr(im2col, "COL_BUDGET", 2 * spec.c * 9 * 16 * spec.itemsize)
    monkeypatch.setattr(im2col, "MAX_BLOCKS", 1)
    assert im2col._chunk(spec) == 2
    check(im2col, spec)


def test_im2col_phases():
    spec = CASES["stride 2 pad 1"]
    w = np.zeros(spec.weight_shape, dtype=spec.dtype)
    names = [name for name, _ in im2col.prepare(w, spec).phases]
    assert names == ["pack", "multiply"]


def test_workspace():
    spec = ConvSpec(n=2, c=4, h=6, k=6, r=3, groups=2)  # kg 3: one channel per thread
    assert direct.workspace(spec) == spec.params * 4
    assert im2col.workspace(spec) == (spec.params + 2 * 4 * 9 * 16) * 4
    pointwise = spec.with_(r=1, s=1)
    assert im2col.workspace(pointwise) == pointwise.params * 4
