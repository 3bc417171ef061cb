"""The tiled CUDA GEMM against numpy.dot: awkward sizes, batches, shared operands.

C is filled with NaN before each launch, so an element the kernel fails to write fails.
"""

import os

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    from numba import cuda

    if not cuda.is_available():
        pytest.skip("needs a CUDA GPU or NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)

import numpy as np
from numba import cuda

from convbench_kernels.cuda import gemm as cuda_gemm

TOL = {"float32": 1e-5, "float64": 1e-13}  # relative to the largest |C|


def _rand(shape, dtype, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _run(a, b, c_shape, dtype):
    """gemm on device copies of ``a`` and ``b`` into a NaN-filled C; C on the host."""
    d_c = cuda.to_device(np.full(c_shape, np.nan, dtype=dtype))
    cuda_gemm.gemm(cuda.to_device(a), cuda.to_device(b), d_c)
    return d_c.copy_to_host()


def _check(got, want, dtype):
    assert got.dtype == dtype and got.shape == want.shape
    assert np.isfinite(got).all(), "elements of C left unwritten"
    scale = max(float(np.abs(want).max()), 1.0)
    assert float(np.abs(got - want).max()) <= TOL[dtype] * scale


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mnk", [(1, 1, 1), (17, 33, 5), (31, 1, 64), (65, 47, 29)],
                         ids=lambda t: "x".join(map(str, t)))
def test_gemm_matches_numpy(mnk, dtype):
    m, n, k = mnk
    a, b = _rand((m, k), dtype, 0), _rand((k, n), dtype, 1)
    _check(_run(a, b, (m, n), dtype), np.dot(a.astype(np.float64), b.astype(np.float64)),
           dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batched_gemm(dtype):
    a, b = _rand((3, 9, 20), dtype, 2), _rand((3, 20, 18), dtype, 3)
    want = np.matmul(a.astype(np.float64), b.astype(np.float64))
    _check(_run(a, b, (3, 9, 18), dtype), want, dtype)


@pytest.mark.parametrize("a_batch", [None, 1, 2], ids=["A 2-D", "A (1, M, K)", "A cyclic"])
def test_shared_a(a_batch):
    """A 2-D or single A multiplies every B[z]; A with 2 entries alternates (as groups do)."""
    dtype = "float32"
    a = _rand((5, 7) if a_batch is None else (a_batch, 5, 7), dtype, 4)
    b = _rand((4, 7, 10), dtype, 5)
    a3 = a.reshape(-1, 5, 7).astype(np.float64)
    want = np.stack([a3[z % a3.shape[0]] @ b[z].astype(np.float64) for z in range(4)])
    _check(_run(a, b, (4, 5, 10), dtype), want, dtype)


def test_batch_beyond_grid_z(monkeypatch):
    """Blocks loop over the batch when it exceeds the grid's z extent (65535 on hardware)."""
    monkeypatch.setattr(cuda_gemm, "MAX_GRID_Z", 2)
    assert cuda_gemm.launch_config(3, 3, 5)[0][2] == 2
    a, b = _rand((5, 3, 4), "float64", 6), _rand((5, 4, 3), "float64", 7)
    _check(_run(a, b, (5, 3, 3), "float64"), np.matmul(a, b), "float64")


def test_strided_views():
    """3-D operands may be views: here every other matrix of a larger batch."""
    dtype = "float64"
    a, b = _rand((4, 6, 5), dtype, 8), _rand((4, 5, 9), dtype, 9)
    d_a, d_b = cuda.to_device(a), cuda.to_device(b)
    d_c = cuda.to_device(np.full((2, 6, 9), np.nan, dtype=dtype))
    cuda_gemm.gemm(d_a[::2], d_b[1::2], d_c)
    _check(d_c.copy_to_host(), np.matmul(a[::2], b[1::2]), dtype)


def test_tiles_fill_the_machine_then_block_registers():
    """Outputs per thread are as many as still give 2 blocks per SM; small axes get 8
    threads, one output each.  Block and shared-memory sizes stay within every GPU's limits."""
    T = cuda_gemm.Tile
    assert cuda_gemm.launch_config(64, 3136, 1, sms=132) == ((196, 4, 1), (16, 16),
                                                             T(16, 16, 1, 1))
    assert cuda_gemm.launch_config(512, 49, 1, sms=132) == ((7, 64, 1), (8, 8), T(8, 8, 1, 1))
    assert cuda_gemm.launch_config(256, 3136, 1, sms=132)[2] == T(16, 16, 2, 2)
    assert cuda_gemm.launch_config(256, 3136, 32, sms=132) == ((49, 4, 32), (16, 16),
                                                               T(16, 16, 4, 4))
    assert cuda_gemm.launch_config(4, 3136, 1, sms=2)[2] == T(8, 16, 1, 4)
    assert cuda_gemm.launch_config(4, 5, 1)[2] == T(8, 8, 1, 1)
    for m, n, batch in ((1, 1, 1), (64, 3136, 32), (2048, 49, 1), (5, 70000, 3)):
        grid, block, t = cuda_gemm.launch_config(m, n, batch)
        assert block[0] * block[1] <= 1024 and grid[1] <= 65535 and grid[2] <= 65535
        assert grid[0] * t.tx * t.rn >= n and grid[1] * t.ty * t.rm >= m
        assert (t.ty * t.rm + t.tx * t.rn) * cuda_gemm.BK * 8 <= 48 * 1024


@pytest.mark.parametrize(("level", "dtype"),
                         list(zip(cuda_gemm.LEVELS, ["float32", "float64"] * 2, strict=True)),
                         ids=lambda v: f"{v[0]}x{v[1]}" if isinstance(v, tuple) else v)
def test_every_tile_matches_numpy(level, dtype, monkeypatch):
    """Each tile on odd sizes (partial tiles on both axes, a K tail) and a batch: here forced,
    where the machine would otherwise choose."""
    monkeypatch.setattr(cuda_gemm, "LEVELS", (level,))
    a, b = _rand((2, 19, 21), dtype, 10), _rand((2, 21, 23), dtype, 11)
    run = cuda_gemm.plan(a.shape, b.shape, (2, 19, 23))
    assert (run.tile.ty, run.tile.rm) == (run.tile.tx, run.tile.rn) == level
    d_c = cuda.to_device(np.full((2, 19, 23), np.nan, dtype=dtype))
    run(cuda.to_device(a), cuda.to_device(b), d_c)
    _check(d_c.copy_to_host(), np.matmul(a.astype(np.float64), b.astype(np.float64)), dtype)


@pytest.mark.parametrize(
    ("a_shape", "b_shape", "c_shape"),
    [((3, 4), (5, 6), (3, 6)), ((3, 4), (4, 6), (3, 5)), ((2, 3, 4), (3, 4, 5), (3, 3, 5))],
)
def test_mismatched_shapes_raise(a_shape, b_shape, c_shape):
    with pytest.raises(ValueError, match="shapes do not match"):
        cuda_gemm.gemm(cuda.to_device(np.zeros(a_shape)), cuda.to_device(np.zeros(b_shape)),
                       cuda.to_device(np.zeros(c_shape)))
