"""Launch shapes of every CUDA kernel on real networks' layers, computed without a GPU.

Each CUDA family's ``launches(spec, sms=...)`` is a pure function of the problem and the SM
count, and its ``prepare`` builds exactly those launches.  Here: a 132-SM GPU (an H100) and
every layer of the ResNet-50 and MobileNet presets at batch 1.
"""

import os
from math import prod

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    from numba import cuda

    if not cuda.is_available():
        pytest.skip("needs a CUDA GPU or NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)

import numpy as np  # noqa: E402
from numba import cuda  # noqa: E402

from convbench import registry, sweep  # noqa: E402
from convbench.spec import ConvSpec  # noqa: E402
from convbench_kernels.cuda import depthwise, direct, fft, gemm, im2col, winograd  # noqa: E402
from convbench_kernels.cuda import launch as cl  # noqa: E402
from tests.kernels.test_algorithms import weights_and_reference  # noqa: E402

LAUNCHES = {"direct": direct.launches, "im2col": im2col.launches, "fft": fft.launches,
            "winograd_f23": winograd.launches_f23, "winograd_f43": winograd.launches_f43,
            "winograd_f63": winograd.launches_f63,
            "depthwise": depthwise.launches, "separable": depthwise.launches_separable}
SMS = 132
# The fewest threads a block of each kernel gets: one warp, or the GEMM's 8 x 8 tile.
FLOOR = {"gemm": gemm.SMALL * gemm.SMALL}


def _grids(preset):
    """(layer, algorithm, kernel, blocks, threads per block) of every launch."""
    out = []
    for spec in sweep.preset(preset).problems:
        for algo in registry.algorithms("cuda"):
            if algo.supports(spec) is None:
                out += [(spec.name, algo.name, kernel, prod(grid), prod(block))
                        for kernel, grid, block in LAUNCHES[algo.name](spec, sms=SMS)]
    return out


def test_every_cuda_entry_has_its_launch_shapes():
    assert set(LAUNCHES) == {a.name for a in registry.algorithms("cuda")}


@pytest.mark.parametrize("preset", ["resnet50", "mobilenet"])
def test_launches_fill_a_132_sm_gpu(preset):
    """Every launch gives each SM 2 blocks, or its blocks are already as small as they go
    (one warp; the GEMM's 8 x 8 tile): a layer with fewer independent work items than
    that cannot have more blocks without splitting an item across threads."""
    grids = _grids(preset)
    assert len({(layer, algo) for layer, algo, *_ in grids}) >= 50
    for layer, algo, kernel, blocks, threads in grids:
        assert 1 <= threads <= 1024
        assert blocks >= cl.BLOCKS_PER_SM * SMS or threads == FLOOR.get(kernel, cl.WARP), (
            layer, algo, kernel, blocks, threads)


def test_the_smallest_resnet50_layers():
    """512 -> 512 3x3 at 7x7: direct's 6272 items (4 output channels each) split their sums
    over 6 parts of the input channels (294 blocks of 128), Winograd F(4,3)'s 2048 (channel,
    tile) pairs fill 64 one-warp blocks (a tile's transform is one thread's); the GEMMs
    reach 264."""
    spec = next(s for s in sweep.preset("resnet50").problems if s.name.endswith("res5b_branch2b"))
    got = {(algo, kernel): (blocks, threads) for layer, algo, kernel, blocks, threads
           in _grids("resnet50") if layer == spec.name}
    assert got["direct", "direct"] == (294, 128)
    assert got["direct", "sum_parts"][0] >= 264
    assert got["winograd_f43", "input_transform"] == (64, 32)
    assert got["im2col", "gemm"][0] >= 264 and got["winograd_f43", "gemm"][0] >= 264


@pytest.mark.parametrize("name", ["im2col", "winograd_f23", "separable"])
def test_prepare_plans_the_gemms_launches_lists(name, monkeypatch):
    """The GEMMs a prepare plans are the ones ``launches`` lists (the device's SM count)."""
    module = {"im2col": im2col, "winograd_f23": winograd, "separable": depthwise}[name]
    planned = []

    def spy(*shapes, **kwargs):
        run = gemm.plan(*shapes, **kwargs)
        planned.append(("gemm", run.grid))
        return run

    monkeypatch.setattr(module, "plan", spy)
    spec = ConvSpec(n=2, c=4, h=6, k=5, r=3, padding=1)
    algo = registry.get(name, "cuda")
    _, w, _ = weights_and_reference(algo, spec)
    algo.prepare(w, spec)
    listed = [(kernel, grid) for kernel, grid, _ in LAUNCHES[name](spec) if kernel == "gemm"]
    assert planned == listed and planned



@cuda.jit
def _fill(out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = i + 1


def test_launchers_built_ahead_keep_their_own_shapes():
    """Two launches of one kernel built before either runs (as prepare builds them) each
    launch with their own grid: the simulator's ``kernel[grid, block]`` would alias them."""
    small, large = cl.launcher(_fill, (1,), (4,)), cl.launcher(_fill, (3,), (4,))
    a, b = cuda.to_device(np.zeros(12)), cuda.to_device(np.zeros(12))
    small(a)
    large(b)
    assert a.copy_to_host().tolist() == [1, 2, 3, 4] + [0] * 8
    assert b.copy_to_host().tolist() == list(range(1, 13))
