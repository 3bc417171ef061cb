"""Tiled shared-memory GEMM for row-major device arrays (numba.cuda has no BLAS).

Kernel
------
``C[z] = A[z % A.shape[0]] @ B[z % B.shape[0]]`` for A (a, M, K), B (b, K, N), C (batch, M, N),
``a`` and ``b`` dividing ``batch``: one launch multiplies a whole batch, and a leading axis
of 1 shares that operand by every product (im2col's weights by every image: ``a`` = groups,
``batch`` = images * groups, so weight ``z % groups`` meets the column slab of image
``z // groups``, group ``z % groups``).

A block of T x T threads computes a T x T tile of one C[z], one element per thread.  For each
panel of T columns of A and T rows of B, every thread copies one element of each into
shared memory (zero past the matrix edges, so that sizes need not be multiples of T), the
block synchronizes, and each thread accumulates T products from shared memory.  Grid
``(ceil(N/T), ceil(M/T), min(batch, 65535))``: blocks loop over the batch in strides of the
grid's z extent, so that any batch fits the hardware's 65535 limit.  T is 16, or 8 when M
or N is at most 8 (a 16 x 16 block would leave 3/4 of its threads idle on a kg = 4 layer).

Accumulation is in the arrays' dtype (float32 stays float32: consumer GPUs run float64 at
1/32 to 1/64 of the float32 rate).

Performance: one output per thread reads 2 shared values per fused multiply-add; a
register-blocked kernel (several outputs per thread) would run a few times faster on large
matrices.  This one is the simple, checked baseline.
"""

import math
from functools import cache

from numba import cuda

__all__ = ["TILE", "SMALL_TILE", "gemm"]

TILE = 16  # edge of the square tile of C per block (TILE x TILE threads)
SMALL_TILE = 8  # the edge used when M or N is at most SMALL_TILE
MAX_GRID_Z = 65535  # hardware limit of gridDim.z


@cache
def _kernel(t):
    """The batched GEMM kernel for tiles of ``t`` x ``t`` (a compile-time constant)."""

    @cuda.jit
    def gemm_kernel(a, b, c):
        sa = cuda.shared.array((t, t), a.dtype)
        sb = cuda.shared.array((t, t), b.dtype)
        acc = cuda.local.array(1, c.dtype)  # a scalar of c's dtype (kept in a register)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        row = cuda.blockIdx.y * t + ty
        col = cuda.blockIdx.x * t + tx
        m, n = c.shape[1], c.shape[2]
        k = a.shape[2]
        na, nb = a.shape[0], b.shape[0]
        for z in range(cuda.blockIdx.z, c.shape[0], cuda.gridDim.z):
            za = z % na
            zb = z % nb
            acc[0] = 0
            for k0 in range(0, k, t):
                ka = k0 + tx
                kb = k0 + ty
                if row < m and ka < k:
                    sa[ty, tx] = a[za, row, ka]
                else:
                    sa[ty, tx] = 0
                if kb < k and col < n:
                    sb[ty, tx] = b[zb, kb, col]
                else:
                    sb[ty, tx] = 0
                cuda.syncthreads()
                for kk in range(t):
                    acc[0] += sa[ty, kk] * sb[kk, tx]
                cuda.syncthreads()
            if row < m and col < n:
                c[z, row, col] = acc[0]

    return gemm_kernel


def _as3d(arr, name):
    if arr.ndim == 3:
        return arr
    if arr.ndim == 2:
        return arr.reshape(1, *arr.shape)  # C-contiguous (row-major) 2-D arrays only
    raise ValueError(f"gemm: {name} must be 2-D or 3-D, got shape {arr.shape}")


def launch_config(m, n, batch):
    """``(grid, block)`` of the GEMM kernel for C of shape (batch, m, n)."""
    t = SMALL_TILE if min(m, n) <= SMALL_TILE else TILE
    return (math.ceil(n / t), math.ceil(m / t), min(batch, MAX_GRID_Z)), (t, t)


def gemm(A, B, C, stream=0):
    """``C = A @ B`` on the device, batched over a leading axis.

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
    a, b, c = _as3d(A, "A"), _as3d(B, "B"), _as3d(C, "C")
    batch, m, n = c.shape
    if (a.shape[1] != m or b.shape[2] != n or a.shape[2] != b.shape[1]
            or batch % a.shape[0] or batch % b.shape[0]):
        raise ValueError(f"gemm: shapes do not match: A {A.shape}, B {B.shape}, C {C.shape} "
                         "(need A (a, M, K), B (b, K, N), C (batch, M, N), a and b dividing "
                         "batch)")
    if not (a.dtype == b.dtype == c.dtype):
        raise ValueError(f"gemm: dtypes differ: A {a.dtype}, B {b.dtype}, C {c.dtype}")
    if batch == 0 or m == 0 or n == 0:
        return
    grid, block = launch_config(m, n, batch)
    if grid[1] > 65535:
        raise ValueError(f"gemm: M={m} needs {grid[1]} blocks along y, more than 65535")
    _kernel(block[0])[grid, block, stream](a, b, c)
