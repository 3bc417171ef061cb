"""Register-blocked shared-memory GEMM for row-major device arrays (numba.cuda has no BLAS).

Kernel
------
``C[z] = A[z % A.shape[0]] @ B[z % B.shape[0]]`` for A (a, M, K), B (b, K, N), C (batch, M, N),
``a`` and ``b`` dividing ``batch``: one launch multiplies a whole batch, and a leading axis
of 1 shares that operand by every product (im2col's weights by every image: ``a`` = groups,
``batch`` = images * groups, so weight ``z % groups`` meets the column slab of image
``z // groups``, group ``z % groups``).

A block of ``ty x tx`` threads computes a ``BM x BN`` tile of one C[z] (``BM = ty * rm``,
``BN = tx * rn``): each thread holds ``rm x rn`` outputs in registers, rows
``thread_y + i * ty`` and columns ``thread_x + j * tx``.  For each panel of ``BK`` = 16 steps
of the reduction, the block copies A's ``BM x BK`` panel and B's ``BK x BN`` panel into
shared memory (zero past the matrix edges, so that no size need be a multiple of a tile),
synchronizes, and every thread runs ``BK`` rank-1 updates of its outputs: ``rm + rn`` shared
loads feed ``rm * rn`` fused multiply-adds (4 x 4: 8 loads for 16, where one output per
thread needs 2 loads for each).

Shared memory is conflict-free: the panel copies write consecutive addresses from
consecutive threads (A row-major ``(BM, BK)``, B ``(BK, BN)``, both read coalesced from
global memory); in the update, the lanes of a warp read consecutive columns of the B panel
and at most two rows of the A panel (broadcasts).  The outputs' column stride ``tx`` keeps
C's stores coalesced.

Tiles (`tile`): an axis of at most 8 gets 8 threads and one output each; the others 16
threads and ``r`` outputs each, with ``r`` the largest of 4, 2, 1 that still gives the launch
`convbench_kernels.cuda.launch.min_blocks` blocks (2 per SM), else 8 threads and one output
each.  Large products get 64 x 64 tiles; a batch-1 layer that would leave SMs idle gets
smaller ones, down to 8 x 8.  At most 256 threads and ``(64 * 16 + 16 * 64) * 8`` = 16 KiB
of static shared memory per block (float64); launch bounds that leave room for 768 resident
threads per SM (`RESIDENT_THREADS`).  Grid ``(ceil(N/BN), ceil(M/BM), min(batch,
65535))``: blocks loop over the batch in strides of the grid's z extent, so that any batch
fits the hardware's limit.

Accumulation is in the arrays' dtype (float32 stays float32: consumer GPUs run float64 at
1/32 to 1/64 of the float32 rate), in panels of 16 terms.
"""

from collections import namedtuple
from functools import cache

from numba import cuda

from convbench_kernels.cuda.launch import MAX_GRID_YZ, bounded_jit, launcher, min_blocks

__all__ = ["BK", "Tile", "tile", "launch_config", "launches", "plan", "gemm"]

BK = 16  # reduction steps per shared-memory panel
LOG_BK = 4
SMALL = 8  # an axis of at most this many gets SMALL threads, one output each
# (threads, outputs per thread) along an axis, tried in order until the grid fills the GPU
LEVELS = ((16, 4), (16, 2), (16, 1), (SMALL, 1))
MAX_GRID_Z = MAX_GRID_YZ
# Launch bounds: threads a block's registers must leave room for on one SM (3 blocks of 256,
# 37.5% occupancy).  Unbounded, ptxas gave the 64 x 64 tile 157 registers a thread (one block
# per SM); bounded, 76-78 and no spills in either dtype (benchmarks/cuda_compile.py).
RESIDENT_THREADS = 768

Tile = namedtuple("Tile", "ty tx rm rn")
Tile.__doc__ = "Threads (ty, tx) of a block and outputs (rm, rn) per thread."


def _axis(size, level):
    """(threads, outputs per thread) along an axis of ``size`` at ``level`` of `LEVELS`."""
    return (SMALL, 1) if size <= SMALL else level


def _grid(m, n, batch, t):
    bm, bn = t.ty * t.rm, t.tx * t.rn
    return (-(-n // bn), -(-m // bm), min(batch, MAX_GRID_Z))


def tile(m, n, batch, sms=None):
    """The `Tile` for C (batch, m, n): the most outputs per thread that still fill the GPU
    (``sms`` SMs: default the device's, else 132)."""
    need = min_blocks(sms)
    for level in LEVELS:
        (ty, rm), (tx, rn) = _axis(m, level), _axis(n, level)
        t = Tile(ty, tx, rm, rn)
        g = _grid(m, n, batch, t)
        if g[0] * g[1] * g[2] >= need:
            return t
    return t


def launch_config(m, n, batch, sms=None):
    """``(grid, block, tile)`` of the kernel for C of shape (batch, m, n)."""
    t = tile(m, n, batch, sms)
    return _grid(m, n, batch, t), (t.tx, t.ty), t


def launches(c_shape, sms=None):
    """``[("gemm", grid, block)]``: the launch for C of ``c_shape`` ((M, N) or (batch, M, N))."""
    batch, m, n = _shape3(c_shape)
    grid, block, _ = launch_config(m, n, batch, sms)
    return [("gemm", grid, block)]


@cache
def _kernel(t):
    """The batched GEMM kernel for `Tile` ``t`` (compile-time constants: the register and
    shared arrays need literal shapes)."""
    ty, tx, rm, rn = t
    bm, bn = ty * rm, tx * rn
    log_bn = bn.bit_length() - 1
    nthreads = ty * tx
    a_panel = bm * BK
    b_panel = BK * bn

    @bounded_jit(nthreads, RESIDENT_THREADS // nthreads)
    def gemm_kernel(a, b, c):
        sa = cuda.shared.array((bm, BK), a.dtype)
        sb = cuda.shared.array((BK, bn), b.dtype)
        acc = cuda.local.array((rm, rn), c.dtype)
        rb = cuda.local.array(rn, b.dtype)
        x = cuda.threadIdx.x
        y = cuda.threadIdx.y
        tid = y * tx + x
        row0 = cuda.blockIdx.y * bm
        col0 = cuda.blockIdx.x * bn
        m, n = c.shape[1], c.shape[2]
        k = a.shape[2]
        na, nb = a.shape[0], b.shape[0]
        for z in range(cuda.blockIdx.z, c.shape[0], cuda.gridDim.z):
            za = z % na
            zb = z % nb
            for i in range(rm):
                for j in range(rn):
                    acc[i, j] = 0
            for k0 in range(0, k, BK):
                for e in range(tid, a_panel, nthreads):
                    i = e >> LOG_BK  # (BM, BK) row-major: consecutive threads, consecutive k
                    kk = e & (BK - 1)
                    if row0 + i < m and k0 + kk < k:
                        sa[i, kk] = a[za, row0 + i, k0 + kk]
                    else:
                        sa[i, kk] = 0
                for e in range(tid, b_panel, nthreads):
                    kk = e >> log_bn
                    j = e & (bn - 1)
                    if k0 + kk < k and col0 + j < n:
                        sb[kk, j] = b[zb, k0 + kk, col0 + j]
                    else:
                        sb[kk, j] = 0
                cuda.syncthreads()
                for kk in range(min(BK, k - k0)):  # the last panel may be short
                    for j in range(rn):
                        rb[j] = sb[kk, x + j * tx]
                    for i in range(rm):
                        av = sa[y + i * ty, kk]
                        for j in range(rn):
                            acc[i, j] += av * rb[j]
                cuda.syncthreads()
            for i in range(rm):
                row = row0 + y + i * ty
                if row < m:
                    for j in range(rn):
                        col = col0 + x + j * tx
                        if col < n:
                            c[z, row, col] = acc[i, j]

    return gemm_kernel


def _as3d(arr, name):
    if arr.ndim == 3:
        return arr
    if arr.ndim == 2:
        return arr.reshape(1, *arr.shape)  # C-contiguous (row-major) 2-D arrays only
    raise ValueError(f"gemm: {name} must be 2-D or 3-D, got shape {arr.shape}")


def _shape3(shape):
    return tuple(shape) if len(shape) == 3 else (1, *shape)


def plan(a_shape, b_shape, c_shape, sms=None):
    """Check the shapes and build the launch once: ``run(A, B, C)`` then only launches.

    Parameters
    ----------
    a_shape, b_shape, c_shape : tuples
        Shapes of the operands `gemm` takes (2-D or 3-D).
    sms : int, optional
        SMs to fill (default: the device's, else 132).

    Returns
    -------
    run : callable
        ``run(A, B, C, stream=0)`` on device arrays of those shapes: ``C = A @ B`` (see
        `gemm`).  ``run.tile`` and ``run.grid`` are the launch's shape.
    """
    if not all(len(s) in (2, 3) for s in (a_shape, b_shape, c_shape)):
        raise ValueError(f"gemm: operands must be 2-D or 3-D, got A {a_shape}, B {b_shape}, "
                         f"C {c_shape}")
    (na, m_a, ka), (nb, kb, n_b), (batch, m, n) = map(_shape3, (a_shape, b_shape, c_shape))
    if m_a != m or n_b != n or ka != kb or batch % na or batch % nb:
        raise ValueError(f"gemm: shapes do not match: A {a_shape}, B {b_shape}, C {c_shape} "
                         "(need A (a, M, K), B (b, K, N), C (batch, M, N), a and b dividing "
                         "batch)")
    grid, block, t = launch_config(m, n, batch, sms)
    if grid[1] > MAX_GRID_YZ:
        raise ValueError(f"gemm: M={m} needs {grid[1]} blocks along y, more than {MAX_GRID_YZ}")
    kernel = None if batch == 0 or m == 0 or n == 0 else _kernel(t)
    launch = None if kernel is None else launcher(kernel, grid, block)

    def run(A, B, C, stream=0):
        if launch is not None:
            go = launch if stream == 0 else kernel[grid, block, stream]
            go(_as3d(A, "A"), _as3d(B, "B"), _as3d(C, "C"))

    run.tile, run.grid = t, grid
    return run


def gemm(A, B, C, stream=0):
    """``C = A @ B`` on the device, batched over a leading axis (plans, then launches).

    Parameters
    ----------
    A : device array (M, K) or (a, M, K)
    B : device array (K, N) or (b, K, N)
    C : device array (M, N) or (batch, M, N)
        Overwritten: ``C[z] = A[z % a] @ B[z % b]``; ``a`` and ``b`` divide ``batch`` (a 2-D
        operand is shared by every product).  2-D arrays must be C-contiguous; 3-D ones may
        be strided views.  One dtype for all three, float32 or float64.
    stream : numba.cuda stream or 0
        The stream to launch on (0: the default stream).  Nothing is synchronized.
    """
    if not (A.dtype == B.dtype == C.dtype):
        raise ValueError(f"gemm: dtypes differ: A {A.dtype}, B {B.dtype}, C {C.dtype}")
    plan(A.shape, B.shape, C.shape)(A, B, C, stream)
