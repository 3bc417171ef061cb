"""Winograd F(m x m, 3 x 3) convolution: tile transforms around (m + 2)^2 BLAS GEMMs.

Algorithm
---------
Lavin & Gray 2015, "Fast Algorithms for Convolutional Neural Networks", section 4: the
output is cut into m x m tiles; each tile's (m + 2) x (m + 2) input patch ``d`` and
each 3 x 3 filter ``g`` are transformed (``BT d B``, ``G g GT``), the (m + 2)^2
transformed elements are multiplied pairwise and summed over input channels, which is
one GEMM per element, and ``AT [.] A`` turns the sums back into m x m outputs.  The
matrices come from `kernels.winograd_math` (F(2, 3): points 0, +-1; F(4, 3): points
0, +-1, 1/2, -2, the more accurate set measured there).  ``winograd_f23`` is m = 2,
``winograd_f43`` m = 4.

Layout (ne = (m + 2)^2 transformed elements, tiles = n * ceil(oh/m) * ceil(ow/m))
-------------------------------------------------------------------------------
``U`` (groups, ne, kg, cg)
    Filter transform, computed in float64 in `prepare` and rounded once.
``V`` (groups, ne, cg, tiles)
    Input transform.  Tiles of all images share the tile axis, so a batch makes the
    GEMMs wider, not more numerous.
``M`` (groups, ne, kg, tiles)
    ``M[g, e] = U[g, e] @ V[g, e]``: ne * groups GEMMs, run in a prange over (g, e),
    each on one BLAS thread (see `_gemms`).  With at most ``SKINNY_TILES`` tiles they
    are dot products instead (`_gemms_skinny`), which stream U once.

Both transforms take a *job*: a span of consecutive (channel, tile) positions of one
group, at most ``SPAN`` long, which is contiguous in ``V[g, e]`` (or ``M[g, e]``) for
every e.  The patch gather copies the span's input patches into a per-thread scratch
``D`` (m+2, m+2, span) and then the transform is two passes of long, unit-stride
linear combinations (rows, then columns), the last one writing straight into
``V[g, e, span]``.  The output transform does the reverse and writes the valid part of
each tile into ``out``; partial tiles at the right and bottom edges read zeros, from a
padded input buffer large enough to hold whole tiles.

Supported problems
------------------
3 x 3 filters, stride 1, dilation 1; any padding (asymmetric too), groups, batch,
float32 and float64.

Error
-----
max|out - ref| / max|ref| against the float64 oracle, measured over the helper's test
shapes and the ResNet-50 3x3 layers: F(2, 3) up to 7e-7 and F(4, 3) up to 4e-6 in
float32 (the transforms' larger coefficients amplify rounding; see the table in
`kernels.winograd_math`); 4e-16 and 3e-15 in float64.
"""

from functools import partial

import numba
import numpy as np
from numba import njit, prange

from kernels.cpu.common import pad_into, single_threaded_blas, with_phases
from kernels.winograd_math import winograd_matrices

# Longest (channel, tile) span a transform job handles: its scratch (2 * (m+2)^2 * SPAN
# values per thread) stays within L2, and the unit-stride passes run long enough.
SPAN = 512

# Up to this many tiles the GEMMs are dot products streaming U (`_gemms_skinny`): at 4
# tiles (512 @7, F(4, 3)) 0.8 ms against 1.1-2.2 ms through OpenBLAS; at 16 BLAS wins.
SKINNY_TILES = 8

def supports(spec):
    """None for 3 x 3 filters with stride 1 and dilation 1, else the reason.

    Parameters
    ----------
    spec : ConvSpec-like

    Returns
    -------
    str or None
    """
    need = []
    if (spec.r, spec.s) != (3, 3):
        need.append(f"a 3x3 filter, got {spec.r}x{spec.s}")
    if (spec.sh, spec.sw) != (1, 1):
        need.append(f"stride 1, got {spec.sh}x{spec.sw}")
    if (spec.dh, spec.dw) != (1, 1):
        need.append(f"dilation 1, got {spec.dh}x{spec.dw}")
    return "winograd needs " + "; ".join(need) if need else None


def _jobs(groups, ch, tiles):
    """Transform jobs (g, start, length): spans of the flattened (ch, tiles) axis.

    A span never crosses a group; it holds whole channels when a channel's tiles fit in
    SPAN, else part of one channel, so it stays contiguous in V[g, e] and M[g, e].
    """
    jobs = []
    if tiles >= SPAN:
        for g in range(groups):
            for c in range(ch):
                for t0 in range(0, tiles, SPAN):
                    jobs.append((g, c * tiles + t0, min(SPAN, tiles - t0)))
    else:
        per = SPAN // tiles
        for g in range(groups):
            for c0 in range(0, ch, per):
                jobs.append((g, c0 * tiles, min(per, ch - c0) * tiles))
    return np.array(jobs, dtype=np.int64)


@njit(cache=True)
def _combine(coef, src, s0, ss, dst, d0, ds, length):
    """dst[d0 + o*ds + t] = sum_i coef[o, i] * src[s0 + i*ss + t] for t < length.

    Flat 1-D arrays with explicit row offsets and strides keep every row unit-stride;
    zero coefficients (12-50 % of BT and AT) are skipped.
    """
    # unit-stride views indexed from 0: Numba's wraparound test on a possibly negative
    # index (d + t) stops LLVM from vectorizing; with the views these loops run 13x faster
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


@njit(parallel=True, cache=True)
def _input_transform(xp, BT, m, th, tw, cg, jobs, scratch, V):
    """V[g, e1*nt + e2, span] = (BT d BT^T)[e1, e2] for each patch d of each job's span.

    V is passed flat per group: (groups, ne * cg * tiles).
    """
    nt = BT.shape[0]
    tpi = th * tw
    tiles = xp.shape[0] * tpi
    plane = cg * tiles  # one e of V[g]
    for jb in prange(jobs.shape[0]):
        g, start, length = jobs[jb, 0], jobs[jb, 1], jobs[jb, 2]
        D = scratch[numba.get_thread_id(), 0]  # (i, j, l) flat, row i of nt*length
        E = scratch[numba.get_thread_id(), 1]  # (e1, j, l) flat
        # gather the patches: D[i, j, l] = xp[b, c, ty*m + i, tx*m + j]
        pos = 0
        while pos < length:
            flat = start + pos
            c = g * cg + flat // tiles
            t = flat % tiles
            b, rem = t // tpi, t % tpi
            ty, tx = rem // tw, rem % tw
            run = min(tw - tx, length - pos)
            for i in range(nt):
                row = xp[b, c, ty * m + i]
                for j in range(nt):
                    src = row[tx * m + j::m]
                    dv = D[(i * nt + j) * length + pos:]
                    for q in range(run):
                        dv[q] = src[q]
            pos += run
        _combine(BT, D, 0, nt * length, E, 0, nt * length, nt * length)  # E[e1, j, l]
        Vg = V[g]
        for e1 in range(nt):
            _combine(BT, E, e1 * nt * length, length,
                     Vg, e1 * nt * plane + start, plane, length)


@njit(parallel=True, cache=True)
def _filter_transform(w, G, U):
    """U[g, (a, b), kl, c] = (G w[g, kl, c] G^T)[a, b], computed in float64, rounded once.

    w (groups, kg, cg, 3, 3); U (groups, nt * nt, kg, cg).  Parallel over output channels,
    channels innermost so that the writes are contiguous.  (The NumPy einsum this replaces
    took 70 ms on 512 -> 512 for F(4, 3).)
    """
    groups, kg, cg = w.shape[0], w.shape[1], w.shape[2]
    nt = G.shape[0]
    for gk in prange(groups * kg):
        g, kl = gk // kg, gk % kg
        for a in range(nt):  # c innermost: nt streams of contiguous writes (5x faster)
            for c in range(cg):
                f = w[g, kl, c]
                # row a of G f, then its product with G^T
                t0 = G[a, 0] * f[0, 0] + G[a, 1] * f[1, 0] + G[a, 2] * f[2, 0]
                t1 = G[a, 0] * f[0, 1] + G[a, 1] * f[1, 1] + G[a, 2] * f[2, 1]
                t2 = G[a, 0] * f[0, 2] + G[a, 1] * f[1, 2] + G[a, 2] * f[2, 2]
                for b in range(nt):
                    U[g, a * nt + b, kl, c] = t0 * G[b, 0] + t1 * G[b, 1] + t2 * G[b, 2]


@njit(parallel=True, cache=True)
def _gemms(U, V, M):
    """M[g, e] = U[g, e] @ V[g, e] for every (g, e): one BLAS call per Numba thread.

    The caller limits BLAS to one thread.  Measured (64 @56, F(4, 3), whole compute):
    0.54 ms this way; with the calls serial on OpenBLAS' two threads, 0.65 ms at best and
    often 8-24 ms, as OpenBLAS' spinning worker and Numba's OpenMP threads fight over the
    two cores after every switch between the pools.
    """
    groups, ne = U.shape[0], U.shape[1]
    for ge in prange(groups * ne):
        g, e = ge // ne, ge % ne
        np.dot(U[g, e], V[g, e], M[g, e])


@njit(parallel=True, cache=True, fastmath=True)
def _gemms_skinny(U, V, M, Vt):
    """`_gemms` for few tiles (512 @7 in F(4, 3): 4): dot products that stream U once.

    With 4 columns OpenBLAS' packing makes these GEMMs 2x slower than reading U, which
    then sets the time (36 x 512 x 512 floats: 38 MB, more than the L3).  fastmath lets
    LLVM vectorize the sums over channels (their order changes, as in any blocked GEMM).
    """
    groups, ne, kg, cg = U.shape
    tiles = V.shape[3]
    for ge in prange(groups * ne):
        g, e = ge // ne, ge % ne
        vt = Vt[numba.get_thread_id()]  # (tiles, cg) flat
        for c in range(cg):
            for t in range(tiles):
                vt[t * cg + c] = V[g, e, c, t]
        for k in range(kg):
            u = U[g, e, k]
            for t in range(tiles):
                v = vt[t * cg:(t + 1) * cg]
                acc = u[0] * v[0]
                for c in range(1, cg):
                    acc += u[c] * v[c]
                M[g, e, k, t] = acc


@njit(parallel=True, cache=True)
def _output_transform(M, AT, th, tw, kg, jobs, scratch, out):
    """out tiles = AT Mtile AT^T, only the part inside (oh, ow).  M flat: (groups, ne*kg*tiles)."""
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
        _combine(AT, F, 0, m * length, Y, 0, m * length, m * length)
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
            x1 = min((tx + run) * m, ow)
            for p in range(m):
                oy = ty * m + p
                if oy >= oh:
                    break
                for q in range(min(m, x1 - x0)):
                    dv = out[b, k, oy, x0 + q:x1:m]
                    src = Y[(p * m + q) * length + pos:]
                    for u in range(dv.shape[0]):
                        dv[u] = src[u]
            pos += run


def workspace(spec, m=4):
    """Bytes `prepare` and one call allocate: U, V, M, the tile-padded input and the
    per-thread scratch of the transforms."""
    ne = (m + 2) ** 2
    th, tw = -(-spec.oh // m), -(-spec.ow // m)
    tiles = spec.n * th * tw
    elems = (ne * spec.k * spec.cg + ne * (spec.c + spec.k) * tiles
             + spec.n * spec.c * (th * m + 2) * (tw * m + 2)
             + numba.config.NUMBA_NUM_THREADS * (2 * ne * SPAN + tiles * spec.cg))
    return spec.itemsize * elems


workspace_f23 = partial(workspace, m=2)
workspace_f43 = partial(workspace, m=4)


def prepare(w, spec, m=4):
    """Transform the filters, allocate every buffer, return ``compute(x, out)``.

    Parameters
    ----------
    w : numpy.ndarray (k, cg, 3, 3)
    spec : ConvSpec-like, supported (see `supports`)
    m : int
        Output tile size: 2 for F(2x2, 3x3), 4 for F(4x4, 3x3).

    Returns
    -------
    callable
        ``compute(x, out)``.
    """
    reason = supports(spec)
    if reason is not None:
        raise ValueError(reason)
    dtype = np.dtype(spec.dtype)
    AT, G, BT = winograd_matrices(m, 3)
    nt = m + 2
    groups, cg, kg = spec.groups, spec.cg, spec.kg
    pt, _, pl, _ = spec.pads
    th, tw = -(-spec.oh // m), -(-spec.ow // m)
    tiles = spec.n * th * tw

    U = np.empty((groups, nt * nt, kg, cg), dtype=dtype)
    _filter_transform(np.ascontiguousarray(w).reshape(groups, kg, cg, 3, 3), G, U)
    V = np.empty((groups, nt * nt, cg, tiles), dtype=dtype)
    M = np.empty((groups, nt * nt, kg, tiles), dtype=dtype)
    xp = np.empty((spec.n, spec.c, th * m + 2, tw * m + 2), dtype=dtype)
    in_jobs = _jobs(groups, cg, tiles)
    out_jobs = _jobs(groups, kg, tiles)
    scratch = np.empty((numba.config.NUMBA_NUM_THREADS, 2, nt * nt * SPAN), dtype=dtype)
    BTd = np.ascontiguousarray(BT, dtype=dtype)
    ATd = np.ascontiguousarray(AT, dtype=dtype)
    skinny = tiles <= SKINNY_TILES
    Vt = np.empty((numba.config.NUMBA_NUM_THREADS, tiles * cg if skinny else 1), dtype=dtype)

    Vflat = V.reshape(groups, -1)  # (groups, ne * cg * tiles)
    Mflat = M.reshape(groups, -1)  # (groups, ne * kg * tiles)

    def input_transform(x, out):
        pad_into(x, pt, pl, xp)
        _input_transform(xp, BTd, m, th, tw, cg, in_jobs, scratch, Vflat)

    def multiply(x, out):
        if skinny:
            _gemms_skinny(U, V, M, Vt)
        else:
            with single_threaded_blas():
                _gemms(U, V, M)

    def output_transform(x, out):
        _output_transform(Mflat, ATd, th, tw, kg, out_jobs, scratch, out)

    return with_phases(("input transform", input_transform), ("multiply", multiply),
                       ("output transform", output_transform))


prepare_f23 = partial(prepare, m=2)
prepare_f23.__doc__ = "`prepare` for F(2x2, 3x3) (registry name ``winograd_f23``)."
prepare_f43 = partial(prepare, m=4)
prepare_f43.__doc__ = "`prepare` for F(4x4, 3x3) (registry name ``winograd_f43``)."
