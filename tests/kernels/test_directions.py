"""Both gradients (and so the transposed convolution) of every CPU algorithm that computes
them, against the float64 gradient oracles; the phase and weight-problem forms against the
oracles with the forward oracle as their engine, over every small geometry."""

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from convbench import registry, runner
from convbench.spec import ConvSpec
from convbench_kernels import directions
from convbench_kernels.reference import (
    reference_conv2d,
    reference_conv2d_input,
    reference_conv2d_weight,
)
from tests.cases import CASES, problems, relative_error

BACKWARD = ("bwd_d", "bwd_w")
ALGOS = [a for a in registry.algorithms("cpu") if "bwd_d" in a.directions]


def geometry(spec):
    return dict(stride=(spec.sh, spec.sw), pads=spec.pads, dilation=(spec.dh, spec.dw),
                groups=spec.groups)


def operands(spec, seed=0):
    """``(argument, prepared operand, float64 reference)`` of ``spec``'s direction."""
    rng = np.random.default_rng(seed)
    x, w, dy = (rng.standard_normal(shape).astype(spec.dtype)
                for shape in (spec.input_shape, spec.weight_shape, spec.output_shape))
    if spec.direction == "bwd_d":
        return dy, w, reference_conv2d_input(dy, w, (spec.h, spec.w), **geometry(spec))
    return dy, x, reference_conv2d_weight(x, dy, (spec.r, spec.s), **geometry(spec))


def check(algo, spec, seed=0):
    if algo.operator == "separable":  # a weight pair; its reference is the composed conv's
        a, b, ref = runner.operands(spec, "separable")
    else:
        a, b, ref = operands(spec, seed)
    out = np.full(spec.result_shape, np.nan, dtype=spec.dtype)
    algo.prepare(b, spec)(a, out)
    assert np.isfinite(out).all(), "elements left unwritten (NaN)"
    err = relative_error(out, ref, a, None if algo.operator == "separable" else b)
    assert err <= algo.tolerance[spec.dtype], f"{algo.name} on {spec.id}: error {err:.3g}"


@pytest.mark.parametrize("direction", BACKWARD)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("algo", ALGOS, ids=lambda a: a.name)
def test_named_case(algo, case, direction):
    spec = CASES[case].with_(direction=direction)
    reason = algo.supports(spec)
    if reason is None:
        check(algo, spec)
    else:
        assert isinstance(reason, str) and reason.strip()


@pytest.mark.parametrize("direction", BACKWARD)
@pytest.mark.parametrize("algo", ALGOS, ids=lambda a: a.name)
def test_random_problems(algo, direction):
    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
    @given(problems())
    def run(spec):
        spec = spec.with_(direction=direction)
        if algo.supports(spec) is None:
            check(algo, spec, seed=spec.h)

    run()


def test_every_family_computes_the_stride_1_3x3_gradient_of_the_input():
    """The rotated-filter case every family (Winograd included) takes as a forward problem."""
    spec = ConvSpec(c=6, h=9, k=5, r=3, padding=1, direction="bwd_d")
    assert [a.name for a in ALGOS if a.supports(spec) is None] == [
        a.name for a in ALGOS if a.family != "depthwise"]


@pytest.mark.parametrize(("name", "directions"), [("separable", ("fwd", "bwd_d")),
                                                  ("scipy", ("fwd",))])
def test_entries_refuse_the_directions_they_do_not_list(name, directions):
    try:
        algo = registry.get(name)
    except ValueError:
        pytest.skip(f"{name} is not installed")
    assert algo.directions == directions
    spec = ConvSpec(c=3, h=5, k=3, r=3, direction="bwd_w")
    assert algo.supports(spec) == f"computes {', '.join(directions)} only, not bwd_w"


def _reference_engine(w, spec):
    def compute(x, out):
        out[...] = reference_conv2d(x, w, **geometry(spec))
    return compute


GEOMETRIES = [ConvSpec(n=n, c=c, h=h, w=6, k=4, r=r, s=3, stride=st, padding=p, dilation=d,
                       groups=g, dtype="float64")
              for n, c, h, r, st, p, d, g in itertools.product(
                  (1, 2), (2, 4), (7, 8), (1, 2, 3, 5), (1, 2, 3), (0, 1, (2, 0, 1, 3)),
                  (1, 2), (1, 2))
              if (d * (r - 1) + 1 <= h + (sum(p[:2]) if isinstance(p, tuple) else 2 * p)
                  and 2 * d + 1 <= 6 + (sum(p[2:]) if isinstance(p, tuple) else 2 * p))]


@pytest.mark.parametrize("chunk", range(4))
def test_the_backward_forms_are_exact_on_every_small_geometry(chunk):
    """Strides 1-3 against filters 1-5 (phases without taps, crops of dy beyond the padding),
    dilations, groups, batches: with the forward oracle as the engine, the forms must give the
    gradient oracles' values to rounding."""
    prepare = directions.preparing(_reference_engine)
    for spec in GEOMETRIES[chunk::4]:
        for direction in BACKWARD:
            s = spec.with_(direction=direction)
            a, b, ref = operands(s)
            out = np.full(s.result_shape, np.nan)
            prepare(b, s)(a, out)
            np.testing.assert_allclose(out, ref, rtol=0, atol=1e-10, err_msg=s.id)


def test_phases_cover_dx_once():
    """Every element of dx is in exactly one phase."""
    for spec in GEOMETRIES:
        hits = np.zeros((spec.h, spec.w), int)
        for phase in directions.data_phases(spec):
            rows, cols = phase.rows, phase.cols
            mark = np.ones((1, 1, rows.count, cols.count), int)
            seen = np.zeros((1, 1, spec.h, spec.w), int)
            directions.HOST.place(mark, seen, rows.start, cols.start, spec.sh, spec.sw)
            hits += seen[0, 0]
        assert (hits == 1).all(), spec.id


@pytest.mark.parametrize("small_image, images", [(1, None), (10 ** 6, None), (10 ** 6, 2)],
                         ids=["by-pixels", "by-channels", "by-channels-two-images-a-gemm"])
@pytest.mark.parametrize("case", ["tail channels", "groups 4 stride 2", "batch 3", "float64",
                                  "padding beyond the filter"])
def test_im2col_weight_gradient_both_splits(case, small_image, images):
    """Split by pixels, or by blocks of the gradient with every image in one GEMM or (a
    column budget of two images) in chunks of two, the last one partial at batch 3; the
    blocks cut the columns (cg*r*s > kg) or, padding beyond the filter (3 columns, 4 output
    channels), the output channels."""
    from convbench_kernels.cpu import im2col

    spec = CASES[case].with_(direction="bwd_w")
    a, b, ref = operands(spec)
    params = {**im2col._params(), "small_image": small_image}
    if images:
        crs_pix = spec.c * spec.r * spec.s * spec.oh * spec.ow * spec.itemsize
        params["col_budget"] = images * crs_pix
    out = np.full(spec.result_shape, np.nan, spec.dtype)
    im2col.prepare_weight(b, spec, params)(a, out)
    err = float(np.max(np.abs(out - ref)) / np.max(np.abs(ref)))
    assert err <= registry.get("im2col").tolerance[spec.dtype]


@pytest.mark.parametrize("groups", [1, 2])
def test_im2col_weight_gradient_reads_a_1x1_in_place(groups):
    """Split by pixels, whole images of an unpadded 1x1 stride-1 layer are their own column
    matrices: x and dy read in place (batch 3: one thread takes two images)."""
    from convbench_kernels.cpu import im2col

    spec = CASES["1x1 pointwise"].with_(n=3, c=6, k=8, groups=groups, direction="bwd_w")
    a, b, ref = operands(spec)
    params = {**im2col._params(), "small_image": 1}
    assert im2col._weight_blocks(spec, params) == spec.oh  # whole images a block
    out = np.full(spec.result_shape, np.nan, spec.dtype)
    im2col.prepare_weight(b, spec, params)(a, out)
    err = float(np.max(np.abs(out - ref)) / np.max(np.abs(ref)))
    assert err <= registry.get("im2col").tolerance[spec.dtype]


def test_im2col_weight_gradient_cuts_the_larger_side():
    """The split by blocks of the gradient cuts its columns where they outnumber its output
    channels and the GEMMs are at least twice as deep as those, else its output channels
    (the cases of the test above reach both)."""
    from convbench_kernels.cpu import im2col

    assert im2col._cuts_columns(CASES["tail channels"], 38)  # 117 columns, 19 channels
    assert not im2col._cuts_columns(CASES["tail channels"], 37)
    assert not im2col._cuts_columns(CASES["padding beyond the filter"], 100)  # 3 < 4


@pytest.mark.parametrize("k_inner", [False, True], ids=["dy-rows-shared", "x-columns-shared"])
@pytest.mark.parametrize("tile", [(6, 4), (3, 4), (1, 5)], ids=lambda t: f"{t[0]}x{t[1]}")
@pytest.mark.parametrize("chunk", ["one", "images", "pixels"])
@pytest.mark.parametrize("case", ["tail channels", "groups 4 stride 2", "batch 3", "float64",
                                  "padding beyond the filter"])
def test_direct_weight_gradient_tiles_and_chunks(case, chunk, tile, k_inner):
    """Every register tile (padding rows and columns where kg and cg*taps are not multiples
    of it), every chunking of the pixels (all in one chunk, whole images a chunk with the
    last partial at batch 3, each image cut in several pixel ranges) and both orders of the
    work items."""
    from convbench_kernels.cpu import direct_weight
    from convbench_kernels.cpu.target import current

    spec = CASES[case].with_(direction="bwd_w")
    a, b, ref = operands(spec)
    vl = current().lanes(spec.itemsize)
    pg = direct_weight._layout(spec, vl)[1]  # pixels of an image's grid
    pixels = {"one": 1 << 40, "images": 2 * pg, "pixels": vl}[chunk]
    params = {"kb": tile[0], "nj": tile[1], "k_inner": k_inner,
              "chunk_bytes": pixels * (spec.k + spec.c) * spec.itemsize}
    compute = direct_weight.prepare(b, spec, params)
    chunks = compute.chunks
    if chunk == "pixels":
        assert (chunks[:, 1] - chunks[:, 0] == 1).all() and len(chunks) > spec.n
    elif chunk == "images" and spec.n > 1:
        assert len(chunks) < spec.n and (chunks[:, 2:] == chunks[0, 2:]).all()
    out = np.full(spec.result_shape, np.nan, spec.dtype)
    compute(a, out)
    err = float(np.max(np.abs(out - ref)) / np.max(np.abs(ref)))
    assert err <= registry.get("direct").tolerance[spec.dtype], err


@pytest.mark.parametrize(("t", "dtype"), [(2, "float32"), (4, "float32"), (4, "float64")])
@pytest.mark.parametrize("shape", [(2, 5, 11, 9, 7, (1, 1, 1, 1)),
                                   (3, 21, 8, 13, 19, (0, 2, 1, 0)),
                                   (1, 3, 14, 6, 34, (1, 1, 1, 1)),
                                   (2, 19, 5, 37, 9, (1, 1, 1, 1)),
                                   (1, 64, 13, 6, 20, (1, 1, 1, 1))],
                         ids=["odd", "channel tails", "one image", "wide rows", "wide tile"])
def test_winograd_weight_gradient_blocks(shape, t, dtype):
    """The blocked weight gradient (channels in lanes, tile rows in blocks) against the
    float64 oracle and the unblocked one: channel counts off the vector and the register
    tile (and its default width), odd images and padding, rows wide enough for whole vectors
    of pixels (moved by transposes), and blocks of one tile row, two, and all of them (the
    last one partial).  F(3x3, 2x2) in float32 alone: each case compiles its kernels."""
    from convbench_kernels.cpu import winograd_weight

    n, c, h, w, k, pads = shape
    spec = ConvSpec(n=n, c=c, h=h, w=w, k=k, r=3, padding=pads, dtype=dtype, direction="bwd_w")
    a, b, ref = operands(spec)
    algo = registry.get({2: "winograd_f23", 4: "winograd_f43"}[t])
    tile_rows = n * -(-spec.oh // t)
    outs = []
    for params in [{"blocked": False}, {"blocked": True, "block_rows": 1},
                   {"blocked": True, "block_rows": 2}, {"blocked": True}]:
        out = np.full(spec.result_shape, np.nan, spec.dtype)
        compute = winograd_weight.prepare(b, spec, t, params)
        assert compute.params["blocked"] == params["blocked"]
        compute(a, out)
        err = float(np.max(np.abs(out - ref)) / np.max(np.abs(ref)))
        assert err <= algo.tolerance[dtype], (params, err)
        outs.append(out)
    assert tile_rows > 2  # so that blocks of 1 and 2 rows make several, the last partial
    atol = algo.tolerance[dtype] * np.max(np.abs(ref))
    np.testing.assert_allclose(outs[1], outs[0], rtol=0, atol=atol)


def test_winograd_weight_gradient_blocks_where_its_products_fit_the_caches():
    """Blocked by default with one group, a vector of channels or more, and products (36 x
    k x c) within the threads' L2s: a grouped layer, one with fewer channels than lanes, or
    one with more channels than the caches hold, runs unblocked."""
    import numba

    from convbench_kernels.cpu import winograd_weight
    from convbench_kernels.cpu.target import current

    caches = (current().l2_bytes or 1 << 20) * numba.get_num_threads()
    wide = int((caches / 36 / 4) ** 0.5) + 64  # channels whose float32 products exceed them
    vl = current().lanes(4)
    for groups, chans, blocked in [(1, vl, True), (2, 2 * vl, False), (1, vl - 1, False),
                                   (1, wide, False)]:
        spec = ConvSpec(n=1, c=chans, h=6, k=chans, r=3, groups=groups, direction="bwd_w")
        x = np.zeros(spec.input_shape, spec.dtype)
        assert winograd_weight.uses_blocks(spec, 4) == blocked
        assert winograd_weight.prepare(x, spec, 4).params["blocked"] == blocked


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_direct_weight_gradient_reads_whole_vector_1x1_images_in_place(dtype):
    """An unpadded 1x1 stride-1 layer whose images are whole vectors needs no workspace (x
    and dy read as they are); one a pixel short of that is copied, and both are right."""
    from convbench_kernels.cpu import direct_weight
    from convbench_kernels.cpu.target import current

    vl = current().lanes(np.dtype(dtype).itemsize)
    for w, in_place in [(vl, True), (vl - 1, False)]:
        spec = ConvSpec(n=3, c=6, h=4, w=w, k=13, r=1, dtype=dtype, direction="bwd_w")
        assert (direct_weight.workspace(spec) == 0) == in_place
        a, b, ref = operands(spec)
        out = np.full(spec.result_shape, np.nan, spec.dtype)
        direct_weight.prepare(b, spec, {"kb": 3, "nj": 4})(a, out)
        err = float(np.max(np.abs(out - ref)) / np.max(np.abs(ref)))
        assert err <= registry.get("direct").tolerance[dtype], (w, err)
