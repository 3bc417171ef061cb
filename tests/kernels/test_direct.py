"""Direct's two kernels: the channel-lane one (output channels in the vector lanes) on the
shapes that reach each of its tiles, against the float64 reference and against the
pixel-lane kernel, which sums in the same order; in the gradient of the input, its weights
packed from the layer's own."""

import functools

import numpy as np
import pytest

from convbench.spec import ConvSpec
from convbench_kernels import directions
from convbench_kernels.cpu import direct
from convbench_kernels.cpu.target import current
from convbench_kernels.reference import reference_conv2d_input
from tests.cases import random_arrays, relative_error
from tests.kernels.test_algorithms import reference

# rows of 14 and more (14 x 2 tiles), of 7 to 13 (7 x 3), channel blocks with a tail, every
# stride and padding form, dilation, groups, the unpadded 1x1 read in place, batches
SHAPES = [
    dict(n=2, c=9, k=72, h=15, w=15, r=3, s=3, padding=1),
    dict(n=2, c=5, k=40, h=9, w=8, r=3, s=3, padding=1),
    dict(n=2, c=6, k=33, h=13, w=17, r=3, s=5, stride=(2, 1), padding=(1, 2)),
    dict(n=2, c=8, k=64, h=16, w=16, r=1, s=1),
    dict(n=3, c=8, k=64, h=16, w=15, r=1, s=1, stride=2),
    dict(n=2, c=8, k=48, h=12, w=12, r=3, s=3, dilation=2, padding=2),
    dict(n=2, c=8, k=64, h=10, w=10, r=3, s=3, groups=2),
    dict(n=2, c=3, k=32, h=30, w=30, r=7, s=7, stride=2, padding=3),
    dict(n=2, c=4, k=32, h=7, w=14, r=3, s=3, padding=(0, 1, 2, 0)),
]
ON = {"oc_min": 1}  # wherever the shape allows


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda kw: ConvSpec(**kw).id)
def test_channel_lanes_match_the_reference_and_the_pixel_lanes(shape, dtype):
    spec = ConvSpec(dtype=dtype, **shape)
    params = {**direct.defaults(current()), **ON}
    ct, kv = direct._oc_tile(spec, params)
    assert ct <= spec.ow
    x, w = random_arrays(spec)
    out = np.full(spec.output_shape, np.nan, spec.dtype)
    direct.prepare(w, spec, ON)(x, out)
    err = relative_error(out, reference(spec, x, w))
    assert err <= {"float32": 2e-6, "float64": 1e-14}[dtype], err
    pixel_lanes = np.full_like(out, np.nan)
    direct.prepare(w, spec, {"oc_min": 0})(x, pixel_lanes)
    np.testing.assert_array_equal(out, pixel_lanes)


def test_channel_lanes_only_where_they_pay():
    params = {**direct.defaults(current()), "oc_min": 1024}
    lanes = current().lanes(4)
    wide = ConvSpec(n=2, c=16, k=64, h=28, w=28, r=3, s=3, padding=1)
    assert direct._oc_tile(wide, params) == direct.OC_TILES[0]
    assert direct._oc_tile(wide.with_(h=56, w=10), params) == direct.OC_TILES[1]
    assert direct._oc_tile(wide.with_(h=200, w=5), params) is None  # rows narrower than any tile
    assert direct._oc_tile(wide.with_(h=16, w=16), params) is None  # 512 pixels < 1024
    assert direct._oc_tile(wide.with_(n=1, h=56, w=56), params) is None  # one image
    # unless the pixel-lane kernel would copy a filter of half the L2 or more
    half_l2 = (current().l2_bytes or 1 << 20) // 2
    assert direct._oc_tile(wide.with_(n=1), params, copied_bytes=half_l2) is not None
    assert direct._oc_tile(wide.with_(n=1), params, copied_bytes=half_l2 - 4) is None
    assert direct._oc_tile(wide, {**params, "oc_min": 0}) is None  # off
    # an image's input (16 channels of 31 x 31 padded) beyond the budget
    image = 16 * 31 * 31 * 4
    assert direct._oc_tile(wide, {**params, "oc_input_bytes": image}) is not None
    assert direct._oc_tile(wide, {**params, "oc_input_bytes": image - 1}) is None
    # a tile whose channel blocks would be mostly zero gives way to the next (or to none)
    cols = direct.OC_TILES[0][1] * lanes
    assert direct._oc_tile(wide.with_(k=3 * cols + 1), params) == direct.OC_TILES[0]
    assert direct._oc_tile(wide.with_(k=cols + 1), params) == direct.OC_TILES[1]
    assert direct._oc_tile(wide.with_(k=lanes + 1), params) is None


def _tile(spec):
    p = direct._params(spec)[0]
    return p["kb"], p["nv"]


def test_pixel_tiles_follow_the_grid_and_the_reduction():
    p = direct.defaults(current())
    kb, nv = p["kb"], p["nv"]
    deep = ConvSpec(c=256, k=64, h=56, w=56, r=1, s=1)  # 256 products an output
    assert _tile(deep) == (kb, nv)
    # short reductions take a row one vector wider with as many accumulators, where it fits
    wide = kb * nv // (nv + 1)
    fits = (wide * (nv + 1) == kb * nv
            and (wide + 1) * (nv + 1) + 1 <= current().vector_registers)
    for short in (deep.with_(c=64), ConvSpec(c=3, k=64, h=224, r=7, stride=2, padding=3)):
        assert _tile(short) == ((wide, nv + 1) if fits else (kb, nv))
    # a grid of one narrower row takes that row, whatever the reduction
    row = (nv - 1) * current().lanes(4)
    assert _tile(ConvSpec(c=512, k=512, h=1, w=row, r=1, s=1)) == (kb, nv - 1)
    assert _tile(ConvSpec(c=8, k=64, h=1, w=row, r=1, s=1)) == (kb, nv - 1)


# short reductions (the wide pixel tile on targets whose registers hold it), one image
SHORT = [
    dict(c=64, k=37, h=23, w=19, r=1, s=1),
    dict(c=3, k=20, h=41, w=37, r=7, s=7, stride=2, padding=3),
    dict(c=5, k=70, h=33, w=30, r=3, s=3, stride=(2, 1), padding=(1, 0, 2, 1)),
    dict(c=12, k=24, h=40, w=40, r=3, s=3, groups=2, padding=1, dilation=2),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", SHORT, ids=lambda kw: ConvSpec(**kw).id)
def test_short_reductions_match_the_reference(shape, dtype):
    spec = ConvSpec(dtype=dtype, **shape)
    x, w = random_arrays(spec)
    out = np.full(spec.output_shape, np.nan, spec.dtype)
    direct.prepare(w, spec)(x, out)
    err = relative_error(out, reference(spec, x, w))
    assert err <= {"float32": 2e-6, "float64": 1e-14}[dtype], err


def test_workspace_covers_the_packed_weights():
    spec = ConvSpec(n=2, c=16, k=40, h=14, w=14, r=3, s=3, padding=1)
    on = direct.workspace(spec, ON)
    packed = spec.itemsize * 16 * 9 * -(-40 // (2 * current().lanes(4))) * 2 * current().lanes(4)
    assert on >= packed + spec.itemsize * spec.n * spec.c * 16 * 16


def test_a_filter_larger_than_the_l2_is_packed_in_jobs():
    l2 = current().l2_bytes or 1 << 20
    swapped = directions.SwappedFilter(np.empty((1, 1, 1), np.float32), 1, np.zeros(1),
                                       (l2 // 4, 1, 1, 1))
    assert not direct._packs_in_jobs(swapped, 4)
    assert direct._packs_in_jobs(swapped, 8)


def _gradient_of_input(spec, params, reads_swapped):
    """Direct's gradient of the input for ``spec`` with ``params``, its forward kernels
    handed each phase's filter described (``reads_swapped``) or built."""
    prepare = functools.partial(direct.prepare, params=params)
    prepare.reads_swapped = reads_swapped
    x, w = random_arrays(spec)
    dy = np.random.default_rng(1).standard_normal(spec.output_shape).astype(spec.dtype)
    dx = np.full(spec.input_shape, np.nan, spec.dtype)
    directions.preparing(prepare)(w, spec.with_(direction="bwd_d"))(dy, dx)
    return dy, w, dx


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [
    dict(n=2, c=40, k=9, h=15, w=15, r=3, s=3, padding=1),  # the phase's 40 outputs: a tail
    dict(n=2, c=48, k=6, h=17, w=16, r=3, s=3, stride=2, padding=1),  # 4 phases, 2 or 1 taps
    dict(n=2, c=64, k=8, h=10, w=12, r=3, s=3, groups=2, dilation=(2, 1), padding=2),
    dict(n=2, c=32, k=16, h=9, w=9, r=1, s=1),
], ids=lambda kw: ConvSpec(**kw).id)
@pytest.mark.parametrize("in_jobs", [False, True], ids=["packed first", "packed in jobs"])
def test_a_gradients_filter_is_packed_from_the_layers_weights(shape, dtype, in_jobs,
                                                              monkeypatch):
    """The channel-lane kernel packs each phase's swapped, flipped filter straight from the
    layer's weights (whole before the multiply, or each block inside the job that uses it,
    a block shared by threads split by rows), and computes what the pixel-lane kernel
    computes from the built filter, to the bit."""
    monkeypatch.setattr(direct, "_packs_in_jobs", lambda w, itemsize: in_jobs)
    spec = ConvSpec(dtype=dtype, **shape)
    params = ON
    for phase in directions.data_phases(spec.with_(direction="bwd_d")):
        if phase.problem is not None:
            full = {**direct.defaults(current()), **params}
            assert direct._oc_tile(phase.problem, full) is not None
    dy, w, dx = _gradient_of_input(spec, params, reads_swapped=True)
    ref = reference_conv2d_input(dy, w, (spec.h, spec.w), stride=(spec.sh, spec.sw),
                                 pads=spec.pads, dilation=(spec.dh, spec.dw),
                                 groups=spec.groups)
    err = relative_error(dx, ref)
    assert err <= {"float32": 2e-6, "float64": 1e-14}[dtype], err
    _, _, built = _gradient_of_input(spec, {"oc_min": 0}, reads_swapped=False)
    np.testing.assert_array_equal(dx, built)
