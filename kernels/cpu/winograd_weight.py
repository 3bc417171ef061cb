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

Two forms
---------
*Blocked* (`uses_blocks`: one group, M within the threads' L2s).  The tiles go block by
block of tile rows, a block's U and V as large as the L2s: one launch transforms both
operands of the block (`_tile_transforms`: per tile row and block of VL channels, the rows
of x or dy moved into a strip with the channels in vector lanes, then each tile's transform
computed in registers), a second adds their products into M (`_block_products`: register
tiles of kb output channels by nv vectors of input channels, V in column blocks so that a
span of tiles of one block stays in L1 while every row block reads it).  U, V and M stay in
the caches; on 64 -> 64 @56 at batch 8 the unblocked form wrote and read back 29 MB of them.
*Unblocked* (grouped layers, and products larger than the caches, where a block would read
and write M again and the few tiles leave U and V small): each channel's transforms over
the phase planes of all its images (`_transform`), then one BLAS GEMM per element and group
(`_gemms`).

Error
-----
The sums over tiles run in the transformed domain, in the input dtype (blocked: each span
of tiles summed from zero, then added to M); against the float64 oracle max|out - ref| /
max|ref| measured on the kernel test cases stays within the forward kernels' tolerances
(F(3x3, 2x2) like F(2, 3), F(3x3, 4x4) like F(4, 3)).

Supported problems
------------------
Those of the forward Winograd kernels: 3 x 3, stride 1, dilation 1; any padding, groups and
batch; float32 and float64.
"""

import math
from functools import cache

import numba
import numpy as np
from numba import njit, prange
from numba import uint64 as u64

from convbench_kernels.contract import winograd_3x3
from convbench_kernels.cpu.common import carve, single_threaded_blas
from convbench_kernels.cpu.direct import split_row
from convbench_kernels.cpu.microkernel import (
    combine_lanes,
    copy_lanes,
    fma_tile,
    stack_tile,
    transform_lanes,
    transpose_lanes,
)
from convbench_kernels.cpu.target import current, token
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
    groups = M.shape[1]
    kg, cg = dw.shape[0] // groups, dw.shape[1]  # M may be padded past them
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


@njit(cache=True)
def _strip(src, b, cb, y0, left, strip, lanes):
    """``strip[i, q, l] = src[b, cb*VL + l, y0 + i, q - left]`` (VL = len(lanes)), zero
    outside ``src`` and past its channels: rows of one image's channel block with the
    channels in vector lanes, each patch element of a tile one vector.  Where a row has all
    VL channels, runs of VL pixels are transposed in registers (`transpose_lanes`); the
    rest, element by element (the whole strip so: 2.5x the time on 64 -> 64 @56)."""
    n, chans, h, w = src.shape
    rows, cols, vl = strip.shape
    sf, df = src.reshape(-1), strip.reshape(-1)
    for i in range(rows):
        y = y0 + i
        full = cb * vl + vl <= chans and 0 <= y < h
        q = 0
        while q < cols:
            x = q - left
            if full and 0 <= x and x + vl <= w and q + vl <= cols:
                transpose_lanes(df, (i * cols + q) * vl, vl, sf,
                                ((b * chans + cb * vl) * h + y) * w + x, h * w, lanes)
                q += vl
                continue
            for lane in range(vl):
                ch = cb * vl + lane
                inside = ch < chans and 0 <= y < h and 0 <= x < w
                strip[i, q, lane] = sf[((b * chans + ch) * h + y) * w + x] if inside else 0
            q += 1


@njit(cache=True, fastmath={"contract"})
def _transform_row(src, top, left, step, th, tw, r, tile0, cb, mat, strip, out, group, cap,
                   side, taps, lanes):
    """``out[e1*a + e2, (j*cap + tile0 + tx)*group + i : +VL] = (mat @ d @ mat.T)[e1, e2]``
    for every tile tx of tile row ``r = b*th + ty`` in channel block cb: ``d`` the s x s
    patch at (ty*step, tx*step) of ``src`` (n, C, H, W) padded by ``top`` rows and ``left``
    columns of zeros, ``(j, i) = divmod(cb*VL, group)``: the channels in blocks of
    ``group``, each block's ``cap`` tiles in a run.  The row's s image rows go into
    ``strip`` first (`_strip`: channels in lanes, in L1); each tile is then transformed in
    registers (`convbench_kernels.cpu.microkernel.transform_lanes`).  ``side``, ``taps``,
    ``lanes``: `convbench_kernels.cpu.target.token` s of a, s and VL."""
    vl, size = len(lanes), len(taps)
    b, ty = r // th, r % th
    rows = strip[:size]
    _strip(src, b, cb, ty * step - top, left, rows, lanes)
    sf, of = rows.reshape(-1), out.reshape(-1)
    cols = strip.shape[1]
    j, i = (cb * vl) // group, (cb * vl) % group
    for tx in range(tw):
        transform_lanes(of, (j * cap + tile0 + tx) * group + i, out.shape[1], sf,
                        tx * step * vl, cols * vl, vl, mat, side, taps, lanes)


@njit(parallel=True, cache=True, fastmath={"contract"})
def _tile_transforms(x, top, left, dy, step, th, tw, r0, r1, BT, G, strips, V, vgroup, U,
                     ugroup, cap, side, taps, lanes):
    """V and U of the tile rows ``r0 <= r < r1``: every (tile row, channel block) of ``x``
    through ``BT`` (a x a taps) into V, channels in blocks of ``vgroup``, and of ``dy``
    through ``G`` (a x t) into U, channels in blocks of ``ugroup`` (`_transform_row`; tile
    ``(r - r0)*tw + tx``).  One job a tile row and channel block of either operand.
    ``side``, ``taps``, ``lanes``: `convbench_kernels.cpu.target.token` s of a, t and VL."""
    vl = len(lanes)
    cblocks, kblocks = -(-x.shape[1] // vl), -(-dy.shape[1] // vl)
    for job in prange((r1 - r0) * (cblocks + kblocks)):
        r, q = r0 + job // (cblocks + kblocks), job % (cblocks + kblocks)
        strip = strips[numba.get_thread_id()]
        if q < cblocks:
            _transform_row(x, top, left, step, th, tw, r, (r - r0) * tw, q, BT, strip, V,
                           vgroup, cap, side, side, lanes)
        else:
            _transform_row(dy, 0, 0, step, th, tw, r, (r - r0) * tw, q - cblocks, G, strip, U,
                           ugroup, cap, side, taps, lanes)


@njit(parallel=True, cache=True, fastmath={"contract"})
def _block_products(U, V, kp, cp, cap, tiles, first, span, M, rows, vecs, lanes):
    """``M[e] (+)= U[e, :tiles].T @ V[e, :tiles]`` (``first``: =) for every element e: row e
    of U holds its tiles' kp channels one tile after the other, row e of V its cp channels
    in column blocks of ``vecs`` vectors, each block's ``cap`` tiles one after the other
    (`_tile_transforms`); M (ne, kp, cp).

    Register tiles of ``rows`` output channels by a column block
    (`convbench_kernels.cpu.microkernel.fma_tile`: per tile one U element broadcast a row,
    the block's vectors of V loaded once).  A job is an (element, column block); it walks
    the tiles in spans of ``span`` whose V (in L1) every row block then reads, each adding
    its span's sums, started from zero, into M (summing all the tiles in one chain of
    additions lost up to 10x more precision, F(3x3, 2x2) on 64 -> 64 @56 at batch 8)."""
    KB, NV, vl = len(rows), len(vecs), len(lanes)
    cols = NV * vl
    ne, us, vs = U.shape[0], U.shape[1], V.shape[1]
    kblocks, jblocks = kp // KB, cp // cols
    uf, vf, mf = U.reshape(-1), V.reshape(-1), M.reshape(-1)
    for job in prange(ne * jblocks):
        e, jb = job // jblocks, job % jblocks
        vbase = e * vs + jb * cap * cols
        for s0 in range(0, tiles, span):
            s1 = min(s0 + span, tiles)
            for kb in range(kblocks):
                acc = stack_tile(U, rows, vecs, lanes)
                for r in range(KB):
                    for j in range(cols):
                        acc[r, j] = 0
                for q in range(s0, s1):
                    fma_tile(acc, vf, u64(vbase + q * cols), uf, e * us + q * kp + kb * KB, 1,
                             rows, vecs, lanes)
                base = (e * kp + kb * KB) * cp + jb * cols
                for v in range(KB * NV):  # whole vectors at constant offsets: in registers
                    o = base + v // NV * cp + v % NV * vl
                    if first and s0 == 0:
                        copy_lanes(mf, o, acc, v * vl, False, lanes)
                    else:
                        combine_lanes(mf, o, mf, o, acc, v * vl, 1.0, False, lanes)


def _grid(spec, t):
    return -(-spec.oh // t), -(-spec.ow // t)


def workspace(spec, t=2):
    """Bytes of one call.  Blocked (`uses_blocks`): each thread's strip, U and V of one block of
    tiles, and the per-element products.  Otherwise: the two transformed operands, the
    products, and per thread the phase planes of a channel and their row pass (at most the
    input's)."""
    threads = numba.get_num_threads()
    if uses_blocks(spec, t):
        shapes = _blocked_arrays(spec, t, _blocked_layout(spec, t, current(), threads))
        return sum(math.prod(shape) for shape in shapes) * spec.itemsize
    th, tw = _grid(spec, t)
    ne, tiles = (t + 2) ** 2, spec.n * th * tw
    per_thread = (t * t + ne + 1) * (spec.n * (th + 2) * (tw + 2) + tw + 3)
    return (ne * ((spec.k + spec.c) * tiles + spec.k * spec.cg)
            + threads * per_thread) * spec.itemsize


def _product_tile(target, cvecs) -> tuple[int, int]:
    """``(kb, nv)``: the blocked products' register tile, ``kb`` output channels by ``nv``
    vectors of input channels, whose accumulators, ``nv`` input vectors and one broadcast
    fit in the register file (at most 12 rows): 6 x 4 with 32 registers, 6 x 2 with 16,
    where that width divides the channels' vectors (no padded columns), else 12 x 1.  Two
    shapes only: each is a parallel kernel compiled per dtype."""
    wide = 4 if target.vector_registers >= 32 else 2
    nv = wide if cvecs % wide == 0 else 1
    return min(12, (target.vector_registers - nv - 1) // nv), nv


def _blocked_layout(spec, t, target, threads):
    """Sizes of the blocked path: ``(kb, nv, vl, kp, cp, tile rows a block)``: the
    products' register tile, the lanes, U's and V's channels padded to whole tiles, and the
    rows of tiles a block transforms, whose U and V fill the L2 of all the threads."""
    vl = target.lanes(spec.itemsize)
    kvecs, cvecs = -(-spec.k // vl), -(-spec.c // vl)
    kb, nv = _product_tile(target, cvecs)
    kp = -(-kvecs * vl // kb) * kb
    cp = -(-cvecs // nv) * nv * vl
    ne = (t + 2) ** 2
    th, tw = _grid(spec, t)
    tiles = (target.l2_bytes or 1 << 20) * threads // (ne * (kp + cp) * spec.itemsize)
    return kb, nv, vl, kp, cp, min(max(1, tiles // tw), spec.n * th)


def _blocked_arrays(spec, t, layout):
    """Shapes of the blocked path's workspace for ``layout`` (`_blocked_layout`'s sizes): a
    strip for every thread of Numba's pool (indexed by ``numba.get_thread_id``), U and V of
    a block (each element's row one line longer than its tiles, so that a tile's ne stores
    do not all fall in one L1 set), and M."""
    a, (_, tw) = t + 2, _grid(spec, t)
    kb, nv, vl, kp, cp, block = layout
    return ((numba.config.NUMBA_NUM_THREADS, a, tw * t + 2, vl), (a * a, block * tw * kp + vl),
            (a * a, block * tw * cp + vl), (a * a, 1, kp, cp))


def uses_blocks(spec, t) -> bool:
    """Whether the weight gradient runs block by block of tiles (`_prepare_blocked`): one
    group, at least a vector of input and of output channels (its lanes hold channels:
    U-Net's first layer, one input channel, would compute 16 lanes for 1), and the
    products of every element (ne x k x c) within the L2 of all the threads, each thread
    keeping its elements' share there while the blocks stream through.  Deeper
    layers have few tiles and products larger than the caches, which every block would read
    and write again; their U and V go through memory either way, and the blocked form was
    no faster there (F(3x3, 2x2), 256 -> 256 @14 and 512 -> 512 @7 at batch 8 on the Intel
    Xeon, AVX-512, in two noisy runs: unblocked 0.8-1.1x its time)."""
    target, threads = current(), numba.get_num_threads()
    kb, nv, vl, kp, cp, _ = _blocked_layout(spec, t, target, threads)
    products = (t + 2) ** 2 * kp * cp * spec.itemsize
    return (spec.groups == 1 and min(spec.c, spec.k) >= vl
            and products <= (target.l2_bytes or 1 << 20) * threads)


def _zero_padding(U, V, kw, kp, cvecs, cpvecs, nv, vl, cap):
    """Zero the channels of U and V that the transforms never write and the products read:
    U's columns ``kw <= j < kp`` of every tile, and V's channel vectors ``cvecs <= v <
    cpvecs`` (block ``v // nv``, lanes ``v % nv`` of it)."""
    ne, cols = U.shape[0], nv * vl
    U[:, :cap * kp].reshape(ne, cap, kp)[:, :, kw:] = 0
    for v in range(cvecs, cpvecs):
        j, i = divmod(v, nv)
        block = V[:, j * cap * cols:(j + 1) * cap * cols].reshape(ne, cap, cols)
        block[:, :, i * vl:(i + 1) * vl] = 0


def _prepare_blocked(x, spec, t, block_rows=None):
    """``compute(dy, dw)`` block by block of tile rows: both transforms of a block
    (`_tile_transforms`, channels in vector lanes) into L2-sized U and V, then their
    products added into M (`_block_products`); last, the output transform.  The
    transformed operands never leave the caches.  ``block_rows``: the rows of tiles a block
    takes, instead of `_blocked_layout`'s."""
    target = current()
    AT, G, BT = _matrices(t, spec.dtype)
    a = t + 2
    th, tw = _grid(spec, t)
    ne, tile_rows = a * a, spec.n * th
    kb, nv, vl, kp, cp, block = _blocked_layout(spec, t, target, numba.get_num_threads())
    block = block_rows or block
    cap = block * tw  # tiles a block holds
    span = max(1, (target.l1d_bytes or 32 << 10) // 2 // (nv * vl * spec.itemsize))
    dtype = np.dtype(spec.dtype)
    pt, _, pl, _ = spec.pads
    strips, U, V, M = carve(dtype, *_blocked_arrays(spec, t, (kb, nv, vl, kp, cp, block)))
    _zero_padding(U, V, -(-spec.k // vl) * vl, kp, -(-spec.c // vl), cp // vl, nv, vl, cap)
    lanes, tile = token(vl), (token(kb), token(nv), token(vl))
    side, taps = token(a), token(t)
    x = np.ascontiguousarray(x)

    def compute(dy, dw):
        dy = np.ascontiguousarray(dy)
        for i, r0 in enumerate(range(0, tile_rows, block)):
            r1 = min(r0 + block, tile_rows)
            _tile_transforms(x, pt, pl, dy, t, th, tw, r0, r1, BT, G, strips, V, nv * vl, U,
                             kp, cap, side, taps, lanes)
            _block_products(U, V, kp, cp, cap, (r1 - r0) * tw, i == 0, span,
                            M.reshape(ne, kp, cp), *tile)
        _output(M, AT, dw)

    compute.params = {"t": t, "blocked": True}
    return compute


def prepare(x, spec, t=2, params=None):
    """``compute(dy, dw)``: the weight gradient by F(3x3, t x t); ``x`` kept by reference
    (every transform is the call's: x and dy are new at each training step).

    ``params``: ``blocked``, block by block of tiles (`_prepare_blocked`; by default where
    `uses_blocks`), and ``block_rows``."""
    reason = supports(spec)
    if reason:
        raise ValueError(reason)
    p = params or {}
    if p.get("blocked", uses_blocks(spec, t)):
        return _prepare_blocked(x, spec, t, p.get("block_rows"))
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

    compute.params = {"t": t, "blocked": False}
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
