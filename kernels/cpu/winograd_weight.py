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

import numpy as np
from numba import njit, prange

from convbench_kernels.contract import winograd_3x3
from convbench_kernels.cpu.common import single_threaded_blas
from convbench_kernels.winograd_math import winograd_matrices

supports = winograd_3x3
POINTS = {2: (0, 1, -1), 4: (0, 1, -1, 0.5, -2)}


@cache
def _matrices(t: int, dtype: str):
    """``(AT, G, BT)`` of F(3, t) in ``dtype`` (AT 3 x n, G n x t, BT n x n)."""
    return tuple(np.ascontiguousarray(a, dtype=dtype)
                 for a in winograd_matrices(3, t, POINTS[t]))


@njit(parallel=True, cache=True, fastmath={"contract"})
def _tiles(src, top, left, step, mat, th, tw, out):
    """``out[e, ch, tile] = (mat @ d @ mat.T).flat[e]`` for every channel ``ch`` of ``src``
    (n, C, H, W) and tile (b, ty, tx) of a th x tw grid: ``d`` the size x size patch whose
    corner is ``src[b, ch, ty*step - top, tx*step - left]``, zero outside ``src``.

    The 2-D transform in two 1-D passes: first along each padded input row, once per row for
    all the tiles that share it (patches overlap by size - step rows), into ``rows`` (row,
    element, tile column); then down the columns of ``rows``, each product a unit-stride
    loop over a row of tiles, written straight into ``out``."""
    n, chans, h, w = src.shape
    a, size = mat.shape
    height = (th - 1) * step + size
    width = (tw - 1) * step + size
    for ch in prange(chans):
        line = np.zeros(width, src.dtype)
        rows = np.empty((height, a, tw), src.dtype)
        for b in range(n):
            for y in range(height):
                iy = y - top
                if 0 <= iy < h:
                    for xx in range(width):
                        ix = xx - left
                        line[xx] = src[b, ch, iy, ix] if 0 <= ix < w else 0
                else:
                    line[:] = 0
                for e in range(a):
                    acc = rows[y, e]
                    acc[:] = 0
                    for j in range(size):
                        m = mat[e, j]
                        if m != 0:
                            for tx in range(tw):
                                acc[tx] += m * line[tx * step + j]
            for ty in range(th):
                tile0 = (b * th + ty) * tw
                for e1 in range(a):
                    for e2 in range(a):
                        dst = out[e1 * a + e2, ch, tile0:tile0 + tw]
                        dst[:] = 0
                        for i in range(size):
                            m = mat[e1, i]
                            if m != 0:
                                r = rows[ty * step + i, e2]
                                for tx in range(tw):
                                    dst[tx] += m * r[tx]


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


@njit(parallel=True, cache=True)
def _output(M, AT, dw):
    """``dw[g*kg + k, c] = AT @ M[:, g, k, c] (n x n) @ AT.T`` (3 x 3)."""
    ne, groups, kg, cg = M.shape
    m, n = AT.shape
    for job in prange(groups * kg):
        g, kk = job // kg, job % kg
        t = np.empty((m, n), M.dtype)
        for c in range(cg):
            for i in range(m):
                for j in range(n):
                    acc = 0.0
                    for q in range(n):
                        acc += AT[i, q] * M[q * n + j, g, kk, c]
                    t[i, j] = acc
            for i in range(m):
                for j in range(m):
                    acc = 0.0
                    for q in range(n):
                        acc += t[i, q] * AT[j, q]
                    dw[g * kg + kk, c, i, j] = acc


def _grid(spec, t):
    return -(-spec.oh // t), -(-spec.ow // t)


def workspace(spec, t=2):
    """Bytes of one call: the two transformed operands and the per-element products."""
    th, tw = _grid(spec, t)
    ne, tiles = (t + 2) ** 2, spec.n * th * tw
    return ne * ((spec.k + spec.c) * tiles + spec.k * spec.cg) * spec.itemsize


def prepare(x, spec, t=2):
    """``compute(dy, dw)``: the weight gradient by F(3x3, t x t); ``x`` kept by reference
    (every transform is the call's: x and dy are new at each training step)."""
    reason = supports(spec)
    if reason:
        raise ValueError(reason)
    AT, G, BT = _matrices(t, spec.dtype)
    th, tw = _grid(spec, t)
    ne, tiles = (t + 2) ** 2, spec.n * th * tw
    U = np.empty((ne, spec.k, tiles), spec.dtype)
    V = np.empty((ne, spec.c, tiles), spec.dtype)
    M = np.empty((ne, spec.groups, spec.kg, spec.cg), spec.dtype)
    pt, _, pl, _ = spec.pads

    def compute(dy, dw):
        _tiles(x, pt, pl, t, BT, th, tw, V)
        _tiles(dy, 0, 0, t, G, th, tw, U)
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
