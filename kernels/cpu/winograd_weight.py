"""Winograd weight gradient F(3 x 3, t x t): the 3 x 3 filter's gradient from t x t tiles of dy.

Algorithm
---------
The weight gradient of a 3 x 3, stride-1 convolution, ``dw[k, c, i, j] = sum_{b,p,q}
dy[b, k, p, q] * xpad[b, c, p + i, q + j]``, is a sum over t x t tiles of ``dy`` of the
correlation of each (t + 2) x (t + 2) patch of ``xpad`` with that tile: three outputs of a
correlation with t taps, which is Winograd's F(3, t) (Lavin & Gray 2015, section 4; the
matrices from `convbench_kernels.winograd_math`, with the tile of ``dy`` as the "filter").  In
the transformed domain the sum over tiles is one GEMM per element: with ``ne = (t + 2)^2``,

    U[e, k, tile] = (G g G^T)[e]     g the tile of dy (per output channel k)
    V[e, c, tile] = (BT d B)[e]      d the patch of xpad (per input channel c)
    M[e] = U[e] @ V[e].T             (k, c): ne GEMMs whose depth is the number of tiles
    dw[k, c] = AT M[:, k, c] A       (3 x 3)

Multiplies: ``ne`` per tile and channel pair against ``9 t^2`` directly: 16 against 36 for
F(3x3, 2x2) (2.25x fewer) and 36 against 144 for F(3x3, 4x4) (4x), the GEMM-shaped share of
the work; the transforms add O(ne (k + c)) per tile.  ``winograd_f23`` computes its weight
gradient with t = 2 (4 x 4 transforms, as its forward F(2, 3)), ``winograd_f43`` with t = 4
(6 x 6, as F(4, 3), the same points 0, +-1, 1/2, -2), and so does ``winograd_f63``: the
weight gradient of ``winograd_f63`` runs F(3x3, 4x4), not an F(3x3, 6x6) of its own.  That
one (t = 6 here, 8 x 8 transforms) would do 64 multiplies per tile and channel pair against
324 directly (5.06x fewer instead of 4x), at the larger rounding of 8-point transforms; it
is not built.

Error
-----
The sums over tiles run in the transformed domain, in the input dtype; against the float64
oracle max|out - ref| / max|ref| measured on the kernel test cases stays within the forward
kernels' tolerances (F(3x3, 2x2) like F(2, 3), F(3x3, 4x4) like F(4, 3)).

Supported problems
------------------
Those of the forward Winograd kernels: 3 x 3, stride 1, dilation 1; any padding, groups and
batch; float32 and float64.
"""

from functools import cache

import numba
import numpy as np
from numba import njit, prange
from numba import uint64 as u64

from convbench_kernels.contract import winograd_3x3
from convbench_kernels.cpu.common import carve, single_threaded_blas
from convbench_kernels.cpu.direct import split_row
from convbench_kernels.winograd_math import winograd_matrices

supports = winograd_3x3
POINTS = {2: (0, 1, -1), 4: (0, 1, -1, 0.5, -2)}


@cache
def _matrices(t: int, dtype: str):
    """``(AT, G, BT)`` of F(3, t) in ``dtype`` (AT 3 x n, G n x t, BT n x n)."""
    return tuple(np.ascontiguousarray(a, dtype=dtype)
                 for a in winograd_matrices(3, t, POINTS[t]))


@njit(cache=True)
def _split(src, ch, top, left, step, hq, wq, planes):
    """``planes[py*step + px, (b*hq + i)*wq + j] = xpad[b, ch, py + step*i, px + step*j]``:
    the phase planes of every image of channel ``ch``, side by side (``xpad``: ``src`` (n, C,
    H, W) with ``top`` rows and ``left`` columns of zeros before it, zeros past it).  The
    elements past the planes, which the transform's runs overhang, are left alone."""
    n, chans, h, w = src.shape
    length = planes.shape[1]
    flat_src, flat_dst = src.reshape(-1), planes.reshape(-1)
    for b in range(n):
        for py in range(step):
            for i in range(hq):
                row = py + step * i - top
                for px in range(step):
                    dst = planes[py * step + px]
                    d0 = (b * hq + i) * wq
                    if row < 0 or row >= h:
                        for j in range(wq):
                            dst[d0 + j] = 0
                        continue
                    split_row(flat_src, (b * chans + ch) * h * w + row * w, px, left, step,
                              w, flat_dst, (py * step + px) * length + d0, wq)


@njit(parallel=True, cache=True, fastmath={"contract"})
def _transform(src, top, left, step, mat, th, tw, out):
    """``out[e1*a + e2, ch, (b*th + ty)*tw + tx] = (mat @ d @ mat.T)[e1, e2]`` for every image
    b, channel ch and tile (ty, tx), ``d`` the size x size patch at (ty*step, tx*step) of
    ``src`` (n, C, H, W) padded by ``top`` rows and ``left`` columns of zeros.

    A job is a channel: its phase planes for all images first (`_split`, into a scratch that
    stays in L2), from which patch element (i, j) of every tile of every image is one run
    over the flattened grid ``p = b*hq*wq + ty*wq + tx``: plane (i % step, j % step) from
    ``(i // step)*wq + j // step`` on.  Both 1-D passes are then unit-stride vector loops
    over the grid: first ``A[e1, j] = sum_i mat[e1, i] * run(i, j)``, then ``sum_j mat[e2,
    j] * A[e1, j]``, whose rows ``ty >= th`` and columns ``tx >= tw`` are dropped as it is
    written to ``out``.  (Loops over each tile row's few tiles, with the patch's columns read
    at a stride, took 13 ms for the input transform of 64 -> 64 @56 at batch 8; one job per
    image and channel, whose runs were 6 to 20 elements long on the deep layers, 8 ms for
    512 -> 512 @7; the planes of every channel written to memory first and read back, 1-2
    ms more a call.)
    """
    n, chans = src.shape[0], src.shape[1]
    a, size = mat.shape
    hq = -(-((th - 1) * step + size) // step)
    wq = -(-((tw - 1) * step + size) // step)
    ps = hq * wq
    grid = n * ps
    length = grid + wq + 1  # the runs overhang the last plane by up to wq + 1
    for ch in prange(chans):
        planes = np.empty((step * step, length), src.dtype)
        planes[:, grid:] = 0
        _split(src, ch, top, left, step, hq, wq, planes)
        A = np.empty((a, size, grid), src.dtype)
        row = np.empty(grid, src.dtype)
        flat = planes.reshape(-1)
        for e1 in range(a):
            for j in range(size):
                acc = A[e1, j]
                acc[:] = 0
                for i in range(size):
                    m = mat[e1, i]
                    if m != 0:
                        s0 = u64(((i % step) * step + j % step) * length + (i // step) * wq
                                 + j // step)
                        for q in range(u64(grid)):
                            acc[q] += m * flat[s0 + q]
        for e1 in range(a):
            for e2 in range(a):
                row[:] = 0
                for j in range(size):
                    m = mat[e2, j]
                    if m != 0:
                        acc = A[e1, j]
                        for q in range(u64(grid)):
                            row[q] += m * acc[q]
                dst = out[e1 * a + e2, ch]
                for b in range(n):
                    for ty in range(th):
                        d0 = u64((b * th + ty) * tw)
                        s1 = u64(b * ps + ty * wq)
                        for tx in range(u64(tw)):
                            dst[d0 + tx] = row[s1 + tx]


@njit(parallel=True, cache=True)
def _gemms(U, V, groups, M):
    """``M[e, g] = U[e, g's channels] @ V[e, g's channels].T`` for every element and group,
    one single-threaded BLAS GEMM each (the caller limits BLAS to one thread)."""
    ne, k, _ = U.shape
    c = V.shape[1]
    kg, cg = k // groups, c // groups
    for job in prange(ne * groups):
        e, g = job // groups, job % groups
        np.dot(U[e, g * kg:(g + 1) * kg], V[e, g * cg:(g + 1) * cg].T, M[e, g])


@njit(parallel=True, cache=True, fastmath={"contract"})
def _output(M, AT, dw):
    """``dw[g*kg + k, c] = AT @ M[:, g, k, c] (n x n) @ AT.T`` (3 x 3), vectorized over the
    channels c, each ``M[e, g, k]`` a unit-stride row (one 3 x 3 product at a time, reading
    ``M`` at a stride of k*c per element, took 16 ms for 512 -> 512 @7)."""
    ne, groups, kg, cg = M.shape
    m, n = AT.shape
    for job in prange(groups * kg):
        g, kk = job // kg, job % kg
        t = np.zeros((m, n, cg), M.dtype)
        r = np.empty(cg, M.dtype)
        for i in range(m):
            for q in range(n):
                aq = AT[i, q]
                if aq != 0:
                    for j in range(n):
                        src = M[q * n + j, g, kk]
                        for c in range(cg):
                            t[i, j, c] += aq * src[c]
        for i in range(m):
            for j in range(m):
                r[:] = 0
                for q in range(n):
                    aq = AT[j, q]
                    if aq != 0:
                        for c in range(cg):
                            r[c] += aq * t[i, q, c]
                for c in range(cg):
                    dw[g * kg + kk, c, i, j] = r[c]


def _grid(spec, t):
    return -(-spec.oh // t), -(-spec.ow // t)


def workspace(spec, t=2):
    """Bytes of one call: the two transformed operands, the per-element products, and per
    thread the phase planes of a channel and their row pass (at most the input's)."""
    th, tw = _grid(spec, t)
    ne, tiles = (t + 2) ** 2, spec.n * th * tw
    per_thread = (t * t + ne + 1) * (spec.n * (th + 2) * (tw + 2) + tw + 3)
    return (ne * ((spec.k + spec.c) * tiles + spec.k * spec.cg)
            + numba.get_num_threads() * per_thread) * spec.itemsize


def prepare(x, spec, t=2):
    """``compute(dy, dw)``: the weight gradient by F(3x3, t x t); ``x`` kept by reference
    (every transform is the call's: x and dy are new at each training step)."""
    reason = supports(spec)
    if reason:
        raise ValueError(reason)
    AT, G, BT = _matrices(t, spec.dtype)
    th, tw = _grid(spec, t)
    ne, tiles = (t + 2) ** 2, spec.n * th * tw
    dtype = np.dtype(spec.dtype)
    pt, _, pl, _ = spec.pads
    U, V, M = carve(dtype, (ne, spec.k, tiles), (ne, spec.c, tiles),
                    (ne, spec.groups, spec.kg, spec.cg))
    x = np.ascontiguousarray(x)

    def compute(dy, dw):
        _transform(x, pt, pl, t, BT, th, tw, V)
        _transform(dy, 0, 0, t, G, th, tw, U)
        with single_threaded_blas():
            _gemms(U, V, spec.groups, M)
        _output(M, AT, dw)

    compute.params = {"t": t}
    return compute


def prepare_f23(x, spec):
    """F(3x3, 2x2): the weight gradient of ``winograd_f23``."""
    return prepare(x, spec, 2)


def prepare_f43(x, spec):
    """F(3x3, 4x4): the weight gradient of ``winograd_f43``."""
    return prepare(x, spec, 4)


def workspace_f23(spec):
    return workspace(spec, 2)


def workspace_f43(spec):
    return workspace(spec, 4)
