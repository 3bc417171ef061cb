"""Winograd F(m x m, 3 x 3) convolution: tile transforms around (m + 2)^2 BLAS GEMMs.

Algorithm
---------
Lavin & Gray 2015, "Fast Algorithms for Convolutional Neural Networks", section 4: the
output is cut into m x m tiles; each tile's (m + 2) x (m + 2) input patch ``d`` and
each 3 x 3 filter ``g`` are transformed (``BT d B``, ``G g GT``), the (m + 2)^2
transformed elements are multiplied pairwise and summed over input channels, which is
one GEMM per element, and ``AT [.] A`` turns the sums back into m x m outputs.  The
matrices come from `convbench_kernels.winograd_math` (F(2, 3): points 0, +-1; F(4, 3): points
0, +-1, 1/2, -2, the more accurate set measured there; F(6, 3): NNPACK's 0, +-1, +-2, +-1/2,
the most accurate of the sets measured there).  ``winograd_f23`` is m = 2, ``winograd_f43``
m = 4, ``winograd_f63`` m = 6 (8 x 8 tiles, 64 multiplies per 36 outputs against 324).
Everything below is generic in m, which the kernels take at run time from the matrices'
shapes: the three sizes share one compiled specialisation of each kernel per dtype.

Layout (ne = (m + 2)^2 transformed elements, tiles = n * th * tw, th x tw tiles an image)
------------------------------------------------------------------------------------
``Q`` (m, m, th + 2, P) per thread, P = tw + 1
    One padded input channel split into its m x m phases (`_phase_split`): element
    (i, j) of the patches of all tiles of the channel is one contiguous run of Q, at
    tile pitch P.  This one scalar pass replaces a padded copy and a per-patch gather.
``V`` (groups, ne, cg, slots)
    Input transform (`_input_transform`): per channel, a row pass over the nt runs of
    each patch row and a column pass into V, unit-stride loops over all tiles of the
    channel.  Tiles of all images share the slot axis, so a batch makes the GEMMs wider,
    not more numerous.  From ``pitched_tw`` tiles a row V keeps Q's pitch (slots = n * th
    * P, one unused slot a tile row, 7 % at 56 x 56); below it the column pass drops it.
``U`` (groups, ne, kg, cg)
    Filter transform (`_filter_transform`), computed in float64 in `prepare`, vectorized
    over input channels, and rounded once.
``M`` (groups, ne, kg, slots)
    ``M[g, e] = U[g, e] @ V[g, e]``: ne * groups GEMMs, run in a prange over (g, e),
    each on one BLAS thread (see `_gemms`).  With at most ``skinny_tiles`` tiles (512 ->
    512 @7) the layer is weight-bound and U is never stored: `_fused_skinny` transforms
    each output channel's filters on the fly and takes dot products.
Output transform (`_output_transform`): jobs of at most ``span`` consecutive (channel,
tile) positions of M, two passes of unit-stride linear combinations into a per-thread
scratch, then the valid part of each tile is written into ``out``.

Every array above is a view of one workspace per layer, taken from a small pool
(`convbench_kernels.cpu.common.carve`): a workspace freed by one layer is reused by
the next of a similar size, so calls do not page-fault fresh buffers in, and a workspace is
never given to a second layer while the first can still run.

Speed (batch 1, float32, 2 threads, call = prepare + compute as ``convbench.conv2d``
runs it, medians against PyTorch's oneDNN in the same process, quiet machine): F(4, 3)
is 1.25-1.35x faster on 64 -> 64 @56 and 128 -> 128 @28, where the GEMMs take about half
of the compute and the two transforms the rest, and prepare a tenth to a fifth of the
call.  256 -> 256 @14 stays 1.3x and 512 -> 512 @7 2.5x slower: writing, or transforming
on the fly, 36 k c filter values costs more than oneDNN's whole layer.  With another
process busy on one of the two cores every phase boundary waits for it, and the margins
above vanish.  `benchmarks/speed.py` measures them on any machine.

Supported problems
------------------
3 x 3 filters, stride 1, dilation 1; any padding (asymmetric too), groups, batch,
float32 and float64.

Error
-----
max|out - ref| / max|ref| against the float64 oracle, measured over odd shapes (1 x 1
images, asymmetric padding, groups, batch 3, partial tiles) and the ResNet-50 3x3 layers
(x ~ N(0, 1), w ~ N(0, 1/(9c))): F(2, 3) up to 6e-7 and F(4, 3) up to 5.4e-6 (256 -> 256
@14) in float32 (the transforms' larger coefficients amplify rounding; see the table in
`convbench_kernels.winograd_math`); 1.1e-15 and 8e-15 in float64.  F(6, 3), float32, the
largest of seeds 0-2 per ResNet-50 layer: 1.0e-5 (64 -> 64 @56), 1.9e-5 (128 @28), 1.7e-5
(256 @14), 1.2e-5 (512 @7; F(4, 3) 2.5e-6, 4.4e-6, 5.4e-6, 1.7e-6 in the same run), at most
8e-6 on the odd shapes; at most 3.7e-14 in float64.
"""

import math
from functools import cache, lru_cache, partial

import numba
import numpy as np
from numba import njit, prange

from convbench_kernels.contract import winograd_3x3, with_phases
from convbench_kernels.cpu.common import ZERO, carve, single_threaded_blas
from convbench_kernels.cpu.target import Target, current, resolve
from convbench_kernels.winograd_math import winograd_matrices


def defaults(target: Target) -> dict:
    """The layout's tunables for ``target``.

    ``span``: the longest (channel, tile) span an output transform job handles: its scratch
    (2 * 36 * span values per thread at F(4, 3)) stays within a quarter of the L2 (512 on a
    1 MB L2), and the unit-stride passes run long enough.  One span serves every m (the
    tunables are the family's): at F(6, 3) the scratch is 2 * 64 * span values, 16/9 of
    that, so up to 0.44 of the L2 instead of a quarter (exactly a quarter on a 1 MB L2).

    ``skinny_tiles``: up to this many tiles U is never stored (`_fused_skinny`): with few
    tiles, writing U in `prepare` and streaming it through GEMMs of a few columns costs more
    than transforming the filters on the fly; with more, the GEMMs win.  At 4 tiles (512 @7,
    F(4, 3), 38 MB of U) the fused path took half the time of U in `prepare` plus the GEMMs;
    at 16 tiles (256 @14) twice as long as they did.

    ``pitched_tw``: V and M keep the spare tile slot of `_phase_split` from this many tiles a
    row: 7 % more GEMM columns at 56 x 56 cost less than a column pass per tile row (64 -> 64
    @56: the input transform took 40 % less time); at 14 x 14 (tw 4) the 25 % would not.
    """
    l2 = target.l2_bytes or 1 << 20
    span = 1 << max(8, min(10, (l2 // (4 * 2 * 36 * 4)).bit_length() - 1))
    return {"span": span, "skinny_tiles": 8, "pitched_tw": 7}


def space(target: Target) -> list[dict]:
    """Spans of 256 to 1024, the fused path up to 4, 8 or 16 tiles (nothing new to compile:
    these shape the layout and the jobs, not the kernels)."""
    pitched = defaults(target)["pitched_tw"]
    return [{"span": s, "skinny_tiles": k, "pitched_tw": pitched}
            for s in (256, 512, 1024) for k in (4, 8, 16)]


def _params(given=None) -> dict:
    return resolve("winograd", defaults(current()), given)


@cache
def _matrices(m):
    """`winograd_matrices` (m, 3), read-only and cached: their exact rational construction
    costs at least as much as the rest of `prepare` on 64 -> 64 @56."""
    mats = winograd_matrices(m, 3)
    for a in mats:
        a.flags.writeable = False
    return mats


supports = winograd_3x3  # 3x3, stride 1, dilation 1 (the contract's rule)


@lru_cache(maxsize=256)
def _jobs(groups, ch, tiles, span):
    """Transform jobs (g, start, length): spans of the flattened (ch, tiles) axis.

    A span never crosses a group; it holds whole channels when a channel's tiles fit in
    span, else part of one channel, so it stays contiguous in V[g, e] and M[g, e].
    """
    jobs = []
    if tiles >= span:
        for g in range(groups):
            for c in range(ch):
                for t0 in range(0, tiles, span):
                    jobs.append((g, c * tiles + t0, min(span, tiles - t0)))
    else:
        per = span // tiles
        for g in range(groups):
            for c0 in range(0, ch, per):
                jobs.append((g, c0 * tiles, min(per, ch - c0) * tiles))
    jobs = np.array(jobs, dtype=np.int64)
    jobs.flags.writeable = False  # cached: shared by every layer of this shape
    return jobs


@njit(cache=True, inline="always")
def _six_sources(coef, s_0, s_1, s_2, s_3, s_4, s_5, dst, d0, ds, length):
    """dst[d0 + o*ds + t] = sum_j coef[o, j] * s_j[t]: the F(4, 3) pass shared by `_combine`
    and `_combine_at`, one store per element."""
    for o in range(coef.shape[0]):
        dv = dst[d0 + o * ds:d0 + o * ds + length]
        a0, a1, a2 = coef[o, 0], coef[o, 1], coef[o, 2]
        a3, a4, a5 = coef[o, 3], coef[o, 4], coef[o, 5]
        for t in range(length):
            dv[t] = (a0 * s_0[t] + a1 * s_1[t] + a2 * s_2[t]
                     + a3 * s_3[t] + a4 * s_4[t] + a5 * s_5[t])


@njit(cache=True, inline="always")
def _eight_sources(coef, s_0, s_1, s_2, s_3, s_4, s_5, s_6, s_7, dst, d0, ds, length):
    """`_six_sources` for the 8-point rows of F(6, 3)."""
    for o in range(coef.shape[0]):
        dv = dst[d0 + o * ds:d0 + o * ds + length]
        a0, a1, a2, a3 = coef[o, 0], coef[o, 1], coef[o, 2], coef[o, 3]
        a4, a5, a6, a7 = coef[o, 4], coef[o, 5], coef[o, 6], coef[o, 7]
        for t in range(length):
            dv[t] = (a0 * s_0[t] + a1 * s_1[t] + a2 * s_2[t] + a3 * s_3[t]
                     + a4 * s_4[t] + a5 * s_5[t] + a6 * s_6[t] + a7 * s_7[t])


@njit(cache=True)
def _combine(coef, src, s0, ss, dst, d0, ds, length):
    """dst[d0 + o*ds + t] = sum_i coef[o, i] * src[s0 + i*ss + t] for t < length.

    Flat 1-D arrays with explicit row offsets and strides keep every row unit-stride.  With
    6 columns (F(4, 3)) or 8 (F(6, 3)) each output row is one pass over its sources; otherwise
    zero coefficients (12-50 % of the F(2, 3) matrices) are skipped, one pass per nonzero.
    """
    # unit-stride views indexed from 0: Numba's wraparound test on a possibly negative
    # index (d + t) stops LLVM from vectorizing; with the views these loops run 13x faster
    if coef.shape[1] == 6:
        # F(4, 3): one pass per output row (one store per element instead of one per
        # nonzero coefficient), zeros included
        s_0 = src[s0:s0 + length]
        s_1 = src[s0 + ss:s0 + ss + length]
        s_2 = src[s0 + 2 * ss:s0 + 2 * ss + length]
        s_3 = src[s0 + 3 * ss:s0 + 3 * ss + length]
        s_4 = src[s0 + 4 * ss:s0 + 4 * ss + length]
        s_5 = src[s0 + 5 * ss:s0 + 5 * ss + length]
        _six_sources(coef, s_0, s_1, s_2, s_3, s_4, s_5, dst, d0, ds, length)
        return
    if coef.shape[1] == 8:  # F(6, 3), as F(4, 3)
        _eight_sources(coef, src[s0:s0 + length], src[s0 + ss:s0 + ss + length],
                       src[s0 + 2 * ss:s0 + 2 * ss + length],
                       src[s0 + 3 * ss:s0 + 3 * ss + length],
                       src[s0 + 4 * ss:s0 + 4 * ss + length],
                       src[s0 + 5 * ss:s0 + 5 * ss + length],
                       src[s0 + 6 * ss:s0 + 6 * ss + length],
                       src[s0 + 7 * ss:s0 + 7 * ss + length], dst, d0, ds, length)
        return
    for o in range(coef.shape[0]):
        dv = dst[d0 + o * ds:d0 + o * ds + length]
        first = True
        for i in range(coef.shape[1]):
            a = coef[o, i]
            if a == 0:
                continue
            sv = src[s0 + i * ss:s0 + i * ss + length]
            if first:
                for t in range(length):
                    dv[t] = a * sv[t]
                first = False
            else:
                for t in range(length):
                    dv[t] += a * sv[t]
        if first:
            dv[:] = 0


@njit(cache=True)
def _combine_at(coef, src, offs, dst, d0, ds, length):
    """dst[d0 + o*ds + t] = sum_j coef[o, j] * src[offs[j] + t] for t < length."""
    nj = coef.shape[1]
    if nj == 6:
        s_0 = src[offs[0]:offs[0] + length]
        s_1 = src[offs[1]:offs[1] + length]
        s_2 = src[offs[2]:offs[2] + length]
        s_3 = src[offs[3]:offs[3] + length]
        s_4 = src[offs[4]:offs[4] + length]
        s_5 = src[offs[5]:offs[5] + length]
        _six_sources(coef, s_0, s_1, s_2, s_3, s_4, s_5, dst, d0, ds, length)
        return
    if nj == 8:
        _eight_sources(coef, src[offs[0]:offs[0] + length], src[offs[1]:offs[1] + length],
                       src[offs[2]:offs[2] + length], src[offs[3]:offs[3] + length],
                       src[offs[4]:offs[4] + length], src[offs[5]:offs[5] + length],
                       src[offs[6]:offs[6] + length], src[offs[7]:offs[7] + length],
                       dst, d0, ds, length)
        return
    for o in range(coef.shape[0]):
        dv = dst[d0 + o * ds:d0 + o * ds + length]
        dv[:] = 0
        for j in range(nj):
            a = coef[o, j]
            if a != 0:
                sv = src[offs[j]:offs[j] + length]
                for t in range(length):
                    dv[t] += a * sv[t]


@njit(cache=True)
def _phase_split(x, pt, pl, m, Q):
    """Q[pi, pj, Y, X] = x[m*Y + pi - pt, m*X + pj - pl], zero outside x (one channel).

    Q (m, m, th + 2, P) with P = tw + 1: the padded channel split into its m x m phases,
    so that element (i, j) of the patches of all its tiles is one contiguous run,
    ``Q[i % m, j % m]`` from offset ``(i // m) * P + j // m``, with tiles at pitch P (one
    spare slot per tile row).  This one scalar pass replaces the padding copy and the
    per-patch gather (36 scalar moves a patch, 60 % of the input transform before).
    """
    h, w = x.shape
    hq, wq = Q.shape[2], Q.shape[3]
    for pj in range(m):
        # columns X in [lo, hi) read inside x: m*X + pj - pl in [0, w)
        lo = min(wq, (pl - pj + m - 1) // m) if pl > pj else 0
        hi = max(lo, min(wq, (w + pl - pj + m - 1) // m))
        for pi in range(m):
            for Y in range(hq):
                y = m * Y + pi - pt
                dst = Q[pi, pj, Y]
                if y < 0 or y >= h:
                    dst[:] = 0
                    continue
                dst[:lo] = 0
                src = x[y, m * lo + pj - pl:]
                inner = dst[lo:hi]  # views from 0: no wraparound tests
                for X in range(hi - lo):
                    inner[X] = src[m * X]
                dst[hi:] = 0


@njit(parallel=True, cache=True)
def _input_transform(x, pt, pl, BT, th, vp, groups, Q, Qflat, scratch, V):
    """V[g, e1*nt + e2, c, slot] = (BT d BT^T)[e1, e2] for the patch d of every tile slot.

    Per channel (one prange over images and channels) `_phase_split` writes the channel
    into the per-thread ``Q`` (threads, m, m, th + 2, P), also passed as ``Qflat``
    (threads, m * m * (th + 2) * P), where it stays in cache for the transform.  V is passed
    flat per group: (groups, ne * cg * slots), slots = n * th * vp.  The row pass
    combines the nt runs of `Q` of each patch row i into ``E`` (i, e2, th * P) and the
    column pass combines those into V: long unit-stride vector loops over all tiles of
    the channel.  ``vp`` is the tile pitch of V: P keeps the spare slots (one long column
    pass), tw drops them (one column pass per tile row; better where the spare slots
    would be a large part of the GEMMs, tw < ``pitched_tw``).
    """
    nt = BT.shape[0]
    m = nt - 2
    n, c = x.shape[0], x.shape[1]
    cg = c // groups
    P = Q.shape[4]
    plane = (th + 2) * P
    L = th * P  # slots of one image
    slots = n * th * vp  # of V
    offs = np.empty((nt, nt), dtype=np.int64)
    for i in range(nt):
        for j in range(nt):
            offs[i, j] = ((i % m) * m + j % m) * plane + (i // m) * P + j // m
    for bc in prange(n * c):
        b, ch = bc // c, bc % c
        g, cl = ch // cg, ch % cg
        E = scratch[numba.get_thread_id()]  # (i, e2, L) flat
        _phase_split(x[b, ch], pt, pl, m, Q[numba.get_thread_id()])
        Qc = Qflat[numba.get_thread_id()]
        for i in range(nt):
            _combine_at(BT, Qc, offs[i], E, i * nt * L, L, L)
        Vg = V[g]
        for e2 in range(nt):
            if vp == P:
                _combine(BT, E, e2 * L, nt * L, Vg, (e2 * cg + cl) * slots + b * L,
                         nt * cg * slots, L)
            else:
                for ty in range(th):
                    _combine(BT, E, e2 * L + ty * P, nt * L, Vg,
                             (e2 * cg + cl) * slots + (b * th + ty) * vp, nt * cg * slots, vp)


@njit(cache=True)
def _filter_rows(f, G, S, T, a):
    """Row ``a`` of ``G f`` for a whole row of filters, in float64: T[j, c] (3, cg).

    ``f`` (cg * 9,) holds the cg filters of one output channel; ``S`` (9, cg) receives
    them transposed once per output channel (``a == 0``), so that every pass below runs
    unit-stride over channels and vectorizes.
    """
    cg = S.shape[1]
    if a == 0:
        for ij in range(9):  # stride-9 reads, vectorized as gathers
            s = S[ij]
            src = f[ij:]
            for c in range(cg):
                s[c] = src[c * 9]
    g0, g1, g2 = G[a, 0], G[a, 1], G[a, 2]
    for j in range(3):
        s0, s1, s2, t = S[j], S[3 + j], S[6 + j], T[j]
        for c in range(cg):
            t[c] = g0 * s0[c] + g1 * s1[c] + g2 * s2[c]


@njit(parallel=True, cache=True)
def _filter_transform(w, G, scratch, U):
    """U[g, (a, b), kl, c] = (G w[g, kl, c] G^T)[a, b], computed in float64, rounded once.

    w (groups, kg, cg * 9); scratch (threads, 12, cg) float64; U (groups, nt * nt, kg, cg).
    Parallel over output channels; channels innermost, so that every pass is a unit-stride
    vector loop and the writes are nt * nt contiguous rows (3x faster than a scalar loop
    over filters, on 64 -> 64 and 256 -> 256).
    """
    groups, kg = w.shape[0], w.shape[1]
    nt = G.shape[0]
    for gk in prange(groups * kg):
        g, kl = gk // kg, gk % kg
        buf = scratch[numba.get_thread_id()]
        S, T = buf[:9], buf[9:12]
        for a in range(nt):
            _filter_rows(w[g, kl], G, S, T, a)
            t0, t1, t2 = T[0], T[1], T[2]
            for b in range(nt):
                h0, h1, h2 = G[b, 0], G[b, 1], G[b, 2]
                dst = U[g, a * nt + b, kl]
                for c in range(dst.shape[0]):
                    dst[c] = t0[c] * h0 + t1[c] * h1 + t2[c] * h2


@njit(parallel=True, cache=True)
def _gemms(U, V, M):
    """M[g, e] = U[g, e] @ V[g, e] for every (g, e): one BLAS call per Numba thread.

    The caller limits BLAS to one thread.  Measured on 2 cores (64 @56, F(4, 3), whole
    compute): with the calls serial on OpenBLAS' two threads instead, 1.2x as long at best
    and often 15-45x, as OpenBLAS' spinning worker and Numba's OpenMP threads fight over the
    two cores after every switch between the pools.
    """
    groups, ne = U.shape[0], U.shape[1]
    for ge in prange(groups * ne):
        g, e = ge // ne, ge % ne
        np.dot(U[g, e], V[g, e], M[g, e])


@njit(parallel=True, cache=True, fastmath=True)
def _fused_skinny(w, G, V, M, fscratch, uscratch, Vt, slot):
    """``M[g, e] = U[g, e] @ V[g, e]`` with U computed on the fly, for few tiles.

    With few tiles the layer is weight-bound: U (36 k c values) was written by `prepare`
    and read back once by GEMMs of 4 columns, 2 x 38 MB through memory on 512 -> 512 @7.
    Here each thread transforms the filters of one output channel (`_filter_rows`,
    float64, rounded once into ``uscratch``, as `_filter_transform`) and takes their dot
    products with ``Vt`` (groups, ne, tiles, cg), V transposed here first, four tiles per
    pass over the channels; nothing of U leaves the core.  fastmath lets
    LLVM vectorize the channel sums (their order changes, as in any blocked GEMM).
    """
    groups, ne, cg = V.shape[0], V.shape[1], V.shape[2]
    tiles = slot.shape[0]
    kg = w.shape[1]
    nt = G.shape[0]
    for ge in prange(groups * ne):
        g, e = ge // ne, ge % ne
        for c in range(cg):
            for t in range(tiles):
                Vt[g, e, t, c] = V[g, e, c, slot[t]]
    for gk in prange(groups * kg):
        g, kl = gk // kg, gk % kg
        buf = fscratch[numba.get_thread_id()]
        S, T = buf[:9], buf[9:12]
        u = uscratch[numba.get_thread_id()]
        for a in range(nt):
            _filter_rows(w[g, kl], G, S, T, a)
            t0, t1, t2 = T[0], T[1], T[2]
            for b in range(nt):
                h0, h1, h2 = G[b, 0], G[b, 1], G[b, 2]
                for c in range(cg):
                    u[c] = t0[c] * h0 + t1[c] * h1 + t2[c] * h2
                e = a * nt + b
                t = 0
                while t + 4 <= tiles:
                    v0, v1, v2, v3 = Vt[g, e, t], Vt[g, e, t + 1], Vt[g, e, t + 2], Vt[g, e, t + 3]
                    s0, s1, s2, s3 = u[0] * v0[0], u[0] * v1[0], u[0] * v2[0], u[0] * v3[0]
                    for c in range(1, cg):
                        s0 += u[c] * v0[c]
                        s1 += u[c] * v1[c]
                        s2 += u[c] * v2[c]
                        s3 += u[c] * v3[c]
                    M[g, e, kl, slot[t]], M[g, e, kl, slot[t + 1]] = s0, s1
                    M[g, e, kl, slot[t + 2]], M[g, e, kl, slot[t + 3]] = s2, s3
                    t += 4
                while t < tiles:
                    v0 = Vt[g, e, t]
                    s0 = u[0] * v0[0]
                    for c in range(1, cg):
                        s0 += u[c] * v0[c]
                    M[g, e, kl, slot[t]] = s0
                    t += 1


@njit(parallel=True, cache=True)
def _output_transform(M, AT, th, tw, kg, jobs, scratch, out):
    """out tiles = AT Mtile AT^T, only the part inside (oh, ow).

    M flat: (groups, ne * kg * slots), tiles at pitch ``tw`` (V's pitch ``vp``).
    """
    m, nt = AT.shape
    tpi = th * tw
    tiles = out.shape[0] * tpi
    plane = kg * tiles
    oh, ow = out.shape[2], out.shape[3]
    for jb in prange(jobs.shape[0]):
        g, start, length = jobs[jb, 0], jobs[jb, 1], jobs[jb, 2]
        F = scratch[numba.get_thread_id(), 0]  # (e1, q, l) flat
        Y = scratch[numba.get_thread_id(), 1]  # (p, q, l) flat
        Mg = M[g]
        for e1 in range(nt):
            _combine(AT, Mg, e1 * nt * plane + start, plane, F, e1 * m * length, length, length)
        _combine(AT, F, ZERO, m * length, Y, ZERO, m * length, m * length)
        # scatter: out[b, k, ty*m + p, tx*m + q] = Y[p, q, l], inside the image only
        pos = 0
        while pos < length:
            flat = start + pos
            k = g * kg + flat // tiles
            t = flat % tiles
            b, rem = t // tpi, t % tpi
            ty, tx = rem // tw, rem % tw
            run = min(tw - tx, length - pos)
            x0 = tx * m
            full = max(0, min(run, (ow - x0) // m))  # tiles wholly inside the image
            for p in range(m):
                oy = ty * m + p
                if oy >= oh:
                    break
                orow = out[b, k, oy]
                r0 = p * m * length + pos  # Y[p, q, pos] at r0 + q * length
                if m == 4:
                    # one pass over the run, four interleaved streams: a strided loop per
                    # (p, q) runs only 2-14 iterations (on 64 -> 64 @56 such a scatter took
                    # two thirds of the output transform)
                    seg = orow[x0:x0 + 4 * full]
                    y0 = Y[r0:r0 + full]
                    y1 = Y[r0 + length:r0 + length + full]
                    y2 = Y[r0 + 2 * length:r0 + 2 * length + full]
                    y3 = Y[r0 + 3 * length:r0 + 3 * length + full]
                    for u in range(full):
                        seg[4 * u] = y0[u]
                        seg[4 * u + 1] = y1[u]
                        seg[4 * u + 2] = y2[u]
                        seg[4 * u + 3] = y3[u]
                elif m == 6:
                    seg = orow[x0:x0 + 6 * full]
                    y0 = Y[r0:r0 + full]
                    y1 = Y[r0 + length:r0 + length + full]
                    y2 = Y[r0 + 2 * length:r0 + 2 * length + full]
                    y3 = Y[r0 + 3 * length:r0 + 3 * length + full]
                    y4 = Y[r0 + 4 * length:r0 + 4 * length + full]
                    y5 = Y[r0 + 5 * length:r0 + 5 * length + full]
                    for u in range(full):
                        seg[6 * u] = y0[u]
                        seg[6 * u + 1] = y1[u]
                        seg[6 * u + 2] = y2[u]
                        seg[6 * u + 3] = y3[u]
                        seg[6 * u + 4] = y4[u]
                        seg[6 * u + 5] = y5[u]
                elif m == 2:
                    seg = orow[x0:x0 + 2 * full]
                    y0 = Y[r0:r0 + full]
                    y1 = Y[r0 + length:r0 + length + full]
                    for u in range(full):
                        seg[2 * u] = y0[u]
                        seg[2 * u + 1] = y1[u]
                else:
                    for u in range(full):
                        for q in range(m):
                            orow[x0 + u * m + q] = Y[r0 + q * length + u]
                if full < run:  # the tile across the right edge
                    xe = x0 + full * m
                    for q in range(min(m, ow - xe)):
                        orow[xe + q] = Y[r0 + q * length + full]
            pos += run


@lru_cache(maxsize=64)
def _slots(n, th, tw, pitch):
    """Slot of each tile (b, ty, tx) in a pitch-``pitch`` layout of V and M (read-only)."""
    b, ty, tx = np.meshgrid(np.arange(n), np.arange(th), np.arange(tw), indexing="ij")
    slot = ((b * th + ty) * pitch + tx).reshape(-1).astype(np.int64)
    slot.flags.writeable = False
    return slot


def _layout(spec, m, p):
    """Tile counts and the shapes of every workspace array of `prepare`.

    Returns
    -------
    th, tw, P, vp, skinny : int, int, int, int, bool
        Tile rows and columns, the pitch of Q (tw + 1), the tile pitch of V and M, and
        whether the multiply is `_fused_skinny`.
    shapes : dict
        name -> shape, in elements of the dtype (``fscratch`` holds float64: counted in
        dtype elements).
    """
    nt = m + 2
    ne = nt * nt
    groups, cg, kg = spec.groups, spec.cg, spec.kg
    th, tw = -(-spec.oh // m), -(-spec.ow // m)
    tiles = spec.n * th * tw
    threads = numba.config.NUMBA_NUM_THREADS
    skinny = tiles <= p["skinny_tiles"]
    P = tw + 1  # tile pitch of Q: one spare slot per tile row (see `_phase_split`)
    vp = P if tw >= p["pitched_tw"] else tw
    slots = spec.n * th * vp
    shapes = {"V": (groups, ne, cg, slots), "M": (groups, ne, kg, slots),
              "Q": (threads, m, m, th + 2, P),
              "scratch": (threads, max(2 * ne * p["span"], ne * th * P)),
              "fscratch": (threads, 12 * cg * 8 // spec.itemsize)}
    if skinny:
        shapes.update(Vt=(groups, ne, tiles, cg), uscratch=(threads, cg))
    else:
        shapes.update(U=(groups, ne, kg, cg))
    return th, tw, P, vp, skinny, shapes


def workspace(spec, m=4, params=None):
    """Bytes `prepare` and one call allocate: the arrays of `_layout` (V, M, the phase-split
    input Q, the transforms' scratch, and U or the skinny path's transposed V)."""
    _, _, _, _, _, shapes = _layout(spec, m, _params(params))
    return sum(math.prod(sh) * spec.itemsize + 128 for sh in shapes.values())


workspace_f23 = partial(workspace, m=2)
workspace_f43 = partial(workspace, m=4)
workspace_f63 = partial(workspace, m=6)


def prepare(w, spec, params=None, m=4):
    """Transform the filters, take the workspace, return ``compute(x, out)``.

    With at most ``skinny_tiles`` tiles the filters are transformed in every call instead
    (`_fused_skinny`), from ``w`` itself: ``compute`` then reads ``w``, which must not
    change while the layer is in use.

    Parameters
    ----------
    w : numpy.ndarray (k, cg, 3, 3)
    spec : ConvSpec-like, supported (see `supports`)
    params : dict, optional
        ``span``, ``skinny_tiles``, ``pitched_tw`` (`defaults`); default: the installed or
        target-derived ones.
    m : int
        Output tile size: 2 for F(2x2, 3x3), 4 for F(4x4, 3x3), 6 for F(6x6, 3x3).

    Returns
    -------
    callable
        ``compute(x, out)``; ``compute.params`` the parameters it runs.
    """
    reason = supports(spec)
    if reason is not None:
        raise ValueError(reason)
    dtype = np.dtype(spec.dtype)
    AT, G, BT = _matrices(m)
    groups, cg, kg = spec.groups, spec.cg, spec.kg
    pt, _, pl, _ = spec.pads
    threads = numba.config.NUMBA_NUM_THREADS
    p = _params(params)
    th, tw, P, vp, skinny, shapes = _layout(spec, m, p)
    slots = shapes["V"][3]
    V, M, Q, scratch, fscratch = carve(
        dtype, *(shapes[k] for k in ("V", "M", "Q", "scratch", "fscratch")))
    fscratch = fscratch.view(np.float64).reshape(threads, 12, cg)
    wf = np.ascontiguousarray(w).reshape(groups, kg, cg * 9)
    if skinny:
        Vt, uscratch = carve(dtype, shapes["Vt"], shapes["uscratch"])
        slot = _slots(spec.n, th, tw, vp)
        M[...] = 0  # the spare slots, never written, are transformed and dropped
    else:
        (U,) = carve(dtype, shapes["U"])
        _filter_transform(wf, G, fscratch, U)
    out_jobs = _jobs(groups, kg, slots, p["span"])
    BTd = np.ascontiguousarray(BT, dtype=dtype)
    ATd = np.ascontiguousarray(AT, dtype=dtype)
    Vflat = V.reshape(groups, -1)  # (groups, ne * cg * slots)
    Mflat = M.reshape(groups, -1)  # (groups, ne * kg * slots)
    Qflat = Q.reshape(threads, -1)  # (threads, m * m * (th + 2) * P)
    oscratch = scratch.reshape(threads, 2, -1)  # (threads, 2, >= ne * span)

    def input_transform(x, out):
        _input_transform(x, pt, pl, BTd, th, vp, groups, Q, Qflat, scratch, Vflat)

    def multiply(x, out):
        if skinny:
            _fused_skinny(wf, G, V, M, fscratch, uscratch, Vt, slot)
        else:
            with single_threaded_blas():
                _gemms(U, V, M)

    def output_transform(x, out):
        _output_transform(Mflat, ATd, th, vp, kg, out_jobs, oscratch, out)

    compute = with_phases(("input transform", input_transform), ("multiply", multiply),
                          ("output transform", output_transform))
    compute.params = p
    return compute


prepare_f23 = partial(prepare, m=2)
prepare_f23.__doc__ = "`prepare` for F(2x2, 3x3) (registry name ``winograd_f23``)."
prepare_f43 = partial(prepare, m=4)
prepare_f43.__doc__ = "`prepare` for F(4x4, 3x3) (registry name ``winograd_f43``)."
prepare_f63 = partial(prepare, m=6)
prepare_f63.__doc__ = "`prepare` for F(6x6, 3x3) (registry name ``winograd_f63``)."
