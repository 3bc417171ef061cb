"""Tiled FFT convolution: small fixed transforms (8 x 8, 16 x 16, 32 x 32) as GEMMs.

Algorithm
---------
Overlap-save over T x T input tiles, as the fastest CPU implementations build FFT convolution
(NNPACK's FFT-8x8 and FFT-16x16; Zlateski, Jia, Li & Durand, "The anatomy of efficient FFT
and Winograd convolutions on modern CPUs", ICS 2019).  Each output tile of m x m outputs,
``m = T - (r_eff - 1)``, is the valid part of the circular cross-correlation of a T x T
input tile with the (dilated) filter: ``Z = X conj(W)`` frequency by frequency, where a
tile's spectrum has ``F = T (T/2 + 1)`` frequencies (real input).  Per frequency and group
the sum over input channels is one complex GEMM, ``Y[f] (tiles x k) = X[f] (tiles x c) @
W[f] (c x k)``, on BLAS (``cgemm``, one per Numba thread).

The transforms are not FFT calls: at these sizes a transform is a pair of small dense DFTs
(rows, then columns), and run over a block of channels at once each is one GEMM with
thousands of rows: the row pass ``(T L, T) @ (T, 2H)`` (H = T/2 + 1 frequencies, re/im
interleaved), the column pass ``(2T, T) @ (T, 2 H L)`` (cosine and sine halves stacked), L
the channel block.  Its flops (about 28 k a 16 x 16 tile) are a tenth of the channel GEMM's
on ResNet-50 and VGG layers and run at BLAS speed, where a general FFT library pays a fixed
cost per small plane.  The inverse keeps only the m valid rows and columns: its column pass
is ``(2m, T)`` and its row pass (complex to real) ``(2H, m)``, with ``1 / T^2`` folded in.

Layout (``nt`` tiles = images x tile rows x tile columns, ``H = T//2 + 1``, ``F = T H``)
-------------------------------------------------------------------------------
``X`` (groups, F, nt, ccg) complex
    Input spectra, written by `_forward`: per job (tile, group, channel block) the T x T x L
    patch is gathered (padding read as zeros, never materialised), transformed by the two
    GEMMs and scattered frequency by frequency as runs of L channels.
``W`` (groups, F, ccg, kg) complex
    Conjugated filter spectra, computed in float64 in `prepare` and rounded once.
``Y`` (groups, F, nt, kg) complex
    `_multiply`: one ``cgemm`` per (group, frequency).
Output: `_inverse` per job (tile, group, output-channel block): gather, two GEMMs, crop into
``out`` (partial tiles at the right and bottom edges write their valid part).

Supported problems
------------------
Stride 1 (strided problems are the whole-image `convbench_kernels.cpu.fft`'s, by polyphase
decomposition), any filter whose dilated extent fits half the largest tile, any padding,
dilation and groups, float32 (complex64) and float64 (complex128).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numba
import numpy as np
from numba import njit, prange

from convbench_kernels.contract import with_phases
from convbench_kernels.cpu.common import carve, single_threaded_blas
from convbench_kernels.cpu.target import Target, current, resolve

TILES = (8, 16, 32)


def defaults(target: Target) -> dict:
    """``block``: channels a transform job takes at once (its buffers, ``~ 10 T^2 block``
    floats at T = 16, stay within a quarter of the L2 for 64 channels on a 1 MB L2).
    ``tile``: 0 lets `choose_tile` pick the tile size, else that size (an error where the
    filter does not fit).  ``byte_cost``: what one byte of filter spectra costs in `_cost`,
    in flops of the channel GEMM (larger: smaller tiles where the spectra dominate)."""
    l2 = target.l2_bytes or 1 << 20
    return {"block": 64 if l2 >= 1 << 20 else 32, "tile": 0, "byte_cost": 4.0}


def space(target: Target) -> list[dict]:
    """Channel blocks of 32 to 128 and the spectra's byte cost quartered or quadrupled (the
    tile stays the model's: a forced size would not fit every filter)."""
    return [{"block": b, "tile": 0, "byte_cost": c} for b in (32, 64, 128)
            for c in (1.0, 4.0, 16.0)]


def _params(given=None) -> dict:
    return resolve("fft_tiled", defaults(current()), given)


def _extent(spec):
    return spec.dh * (spec.r - 1) + 1, spec.dw * (spec.s - 1) + 1


def supports(spec) -> str | None:
    """Stride 1 and a dilated filter no larger than half the largest tile."""
    need = []
    if (spec.sh, spec.sw) != (1, 1):
        need.append(f"stride 1, got {spec.sh}x{spec.sw} (the fft entry takes strides)")
    re, se = _extent(spec)
    if max(re, se) > TILES[-1] // 2:
        need.append(f"a dilated filter of at most {TILES[-1] // 2} per side, got {re}x{se}")
    return "fft_tiled needs " + "; ".join(need) if need else None


# ----------------------------------------------------------------------------- planning
def _tiles(spec, t):
    re, se = _extent(spec)
    mh, mw = t - re + 1, t - se + 1
    return mh, mw, spec.n * -(-spec.oh // mh) * -(-spec.ow // mw)


def _cost(spec, t, byte_cost):
    """Relative cost of tile size ``t``, in flops: the channel GEMM's (8 a complex
    multiply-add), the transforms' (both GEMMs of each input and output plane), and the filter
    spectra's bytes (written, then streamed through the GEMMs) at ``byte_cost`` flops each."""
    _, _, nt = _tiles(spec, t)
    h = t // 2 + 1
    gemm = 8.0 * t * h * nt * spec.cg * spec.k
    transforms = 2.0 * nt * (spec.c + spec.k) * (t * t * 2 * h + 2 * t * t * 2 * h)
    spectra = 2.0 * t * h * spec.cg * spec.k * spec.itemsize * 2
    return gemm + transforms + byte_cost * spectra


def choose_tile(spec, params=None) -> int:
    """The tile size of ``spec``: forced by ``params["tile"]``, else the cheapest by `_cost`
    among the sizes that give at least one output per tile side (and at least half the tile
    as outputs, so a tile is not mostly overlap)."""
    p = _params(params)
    re, se = _extent(spec)
    fits = [t for t in TILES if max(re, se) <= t // 2]
    if p["tile"]:
        if p["tile"] not in fits:
            raise ValueError(f"fft_tiled tile must be one of {fits} for a {re}x{se} filter, "
                             f"got {p['tile']}")
        return p["tile"]
    return min(fits, key=lambda t: _cost(spec, t, p["byte_cost"]))


# ----------------------------------------------------------------------------- matrices
@lru_cache(maxsize=16)
def _dft(t, mh, mw, dtype):
    """The real matrices of one tile size (see the module docstring), read-only.

    Returns ``rows (t, 2h)`` (forward row DFT, re/im interleaved), ``cols (2t, t)`` (cosine
    rows over sine rows), ``icols (2 mh, t)`` and ``irows (2h, mw)`` (inverse, valid outputs
    only, ``1 / t^2`` in ``irows``).  Angles are reduced modulo ``t`` in integers first.
    """
    h = t // 2 + 1
    j = np.arange(t)
    v = np.arange(h)
    ang = 2 * np.pi * (np.outer(j, v) % t) / t  # (t, h)
    rows = np.empty((t, 2 * h))
    rows[:, 0::2], rows[:, 1::2] = np.cos(ang), -np.sin(ang)
    ang_t = 2 * np.pi * (np.outer(j, j) % t) / t  # (u, i)
    cols = np.vstack([np.cos(ang_t), np.sin(ang_t)])
    icols = np.vstack([np.cos(ang_t)[:mh], np.sin(ang_t)[:mh]])
    weight = np.where((v == 0) | (2 * v == t), 1.0, 2.0) / (t * t)
    ang_i = 2 * np.pi * (np.outer(v, np.arange(mw)) % t) / t  # (v, j)
    irows = np.empty((2 * h, mw))
    irows[0::2] = weight[:, None] * np.cos(ang_i)
    irows[1::2] = -weight[:, None] * np.sin(ang_i)
    out = tuple(np.ascontiguousarray(a, dtype=dtype) for a in (rows, cols, icols, irows))
    for a in out:
        a.flags.writeable = False
    return out


# ----------------------------------------------------------------------------- kernels
@njit(parallel=True, cache=True)
def _forward(x, pt, pl, mh, mw, nth, ntw, block, rows, cols, scratch, xs):
    """Input spectra ``xs`` (groups, F, nt, 2 ccg) (complex as re/im pairs) of every tile.

    One job is (tile, group, channel block); each thread owns ``scratch[thread]`` (gathered
    patch, row pass, column pass, back to back).  Jobs are dealt to threads in contiguous
    runs so that a thread's tiles share input rows in cache.
    """
    n, c, h, w = x.shape
    groups, f, nt, _ = xs.shape
    t2 = rows.shape[0]
    hh = rows.shape[1] // 2
    ccg = c // groups
    nb = -(-ccg // block)
    jobs = nt * groups * nb
    nch = min(scratch.shape[0], jobs)
    for ch in prange(nch):
        sc = scratch[ch]
        for job in range(ch * jobs // nch, (ch + 1) * jobs // nch):
            t, g, cb = job // (groups * nb), (job // nb) % groups, job % nb
            b, ti, tj = t // (nth * ntw), (t // ntw) % nth, t % ntw
            c0 = cb * block
            lc = min(block, ccg - c0)
            y0, x0 = ti * mh - pt, tj * mw - pl
            jlo, jhi = max(0, -x0), min(t2, w - x0)
            patch = sc[:t2 * lc * t2].reshape(t2, lc, t2)
            for i in range(t2):
                yy = y0 + i
                for ll in range(lc):
                    if yy < 0 or yy >= h or jhi <= jlo:
                        patch[i, ll, :] = 0
                        continue
                    src = x[b, g * ccg + c0 + ll, yy]
                    patch[i, ll, :jlo] = 0
                    for j in range(jlo, jhi):
                        patch[i, ll, j] = src[x0 + j]
                    patch[i, ll, jhi:] = 0
            n1 = t2 * lc * 2 * hh
            rp = sc[t2 * lc * t2:t2 * lc * t2 + n1].reshape(t2 * lc, 2 * hh)
            np.dot(patch.reshape(t2 * lc, t2), rows, rp)
            cp = sc[t2 * lc * t2 + n1:t2 * lc * t2 + 3 * n1].reshape(2 * t2, lc * 2 * hh)
            np.dot(cols, rp.reshape(t2, lc * 2 * hh), cp)
            for u in range(t2):
                for v in range(hh):
                    dst = xs[g, u * hh + v, t]
                    for ll in range(lc):
                        k = ll * 2 * hh + 2 * v
                        dst[2 * (c0 + ll)] = cp[u, k] + cp[t2 + u, k + 1]
                        dst[2 * (c0 + ll) + 1] = cp[u, k + 1] - cp[t2 + u, k]


@njit(parallel=True, cache=True)
def _multiply(xs, ws, ys):
    """``ys[g, f] = xs[g, f] @ ws[g, f]``: one complex GEMM per (group, frequency), each on one
    BLAS thread (see `convbench_kernels.cpu.common.single_threaded_blas`)."""
    groups, f = xs.shape[0], xs.shape[1]
    for job in prange(groups * f):
        g, fi = job // f, job % f
        np.dot(xs[g, fi], ws[g, fi], ys[g, fi])


@njit(parallel=True, cache=True)
def _inverse(ys, nth, ntw, block, icols, irows, scratch, out):
    """Inverse transform of every (tile, group, output-channel block) and crop into ``out``.

    ys (groups, F, nt, 2 kg) re/im pairs; ``icols`` (2 mh, T), ``irows`` (2H, mw)."""
    n, k, oh, ow = out.shape
    groups, f, nt, _ = ys.shape
    mh2, t2 = icols.shape
    mh = mh2 // 2
    hh2, mw = irows.shape
    hh = hh2 // 2
    kg = k // groups
    nb = -(-kg // block)
    jobs = nt * groups * nb
    nch = min(scratch.shape[0], jobs)
    for ch in prange(nch):
        sc = scratch[ch]
        for job in range(ch * jobs // nch, (ch + 1) * jobs // nch):
            t, g, kb = job // (groups * nb), (job // nb) % groups, job % nb
            b, ti, tj = t // (nth * ntw), (t // ntw) % nth, t % ntw
            k0 = kb * block
            lk = min(block, kg - k0)
            n1 = lk * 2 * hh
            spec = sc[:t2 * n1].reshape(t2, n1)
            for u in range(t2):
                for v in range(hh):
                    src = ys[g, u * hh + v, t]
                    for ll in range(lk):
                        spec[u, ll * 2 * hh + 2 * v] = src[2 * (k0 + ll)]
                        spec[u, ll * 2 * hh + 2 * v + 1] = src[2 * (k0 + ll) + 1]
            cp = sc[t2 * n1:t2 * n1 + 2 * mh * n1].reshape(2 * mh, n1)
            np.dot(icols, spec, cp)
            half = sc[t2 * n1 + 2 * mh * n1:t2 * n1 + 3 * mh * n1].reshape(mh, n1)
            for y in range(mh):
                for q in range(lk * hh):
                    half[y, 2 * q] = cp[y, 2 * q] - cp[mh + y, 2 * q + 1]
                    half[y, 2 * q + 1] = cp[y, 2 * q + 1] + cp[mh + y, 2 * q]
            res = sc[:mh * lk * mw].reshape(mh * lk, mw)
            np.dot(half.reshape(mh * lk, 2 * hh), irows, res)
            i0, j0 = ti * mh, tj * mw
            ni, nj = min(mh, oh - i0), min(mw, ow - j0)
            for ll in range(lk):
                plane = out[b, g * kg + k0 + ll]
                for y in range(ni):
                    r0 = (y * lk + ll)
                    for xx in range(nj):
                        plane[i0 + y, j0 + xx] = res[r0, xx]


# ----------------------------------------------------------------------------- entry point
def _geometry(spec, params=None):
    """Tile size, outputs per tile, tile counts and the workspace shapes (dtype elements)."""
    p = _params(params)
    t = choose_tile(spec, p)
    re, se = _extent(spec)
    mh, mw = t - re + 1, t - se + 1
    nth, ntw = -(-spec.oh // mh), -(-spec.ow // mw)
    nt = spec.n * nth * ntw
    h = t // 2 + 1
    f = t * h
    block = min(p["block"], max(spec.cg, spec.kg))
    threads = numba.config.NUMBA_NUM_THREADS
    shapes = {"xs": (spec.groups, f, nt, 2 * spec.cg), "ys": (spec.groups, f, nt, 2 * spec.kg),
              # forward: patch, row pass, column pass; inverse: spectra, column pass, half
              "scratch": (threads, block * (t * t + 4 * t * 2 * h))}
    return dict(t=t, mh=mh, mw=mw, nth=nth, ntw=ntw, block=block, shapes=shapes, params=p)


def _filter_spectra(w, spec, t):
    """``W[g, f, c, k] = conj(DFT_t(w[g k, c]))`` of the dilated taps, complex (float pairs),
    computed in float64 from the taps alone and rounded once (`_spectra`)."""
    h = t // 2 + 1
    cdtype = np.complex64 if np.dtype(spec.dtype) == np.float32 else np.complex128
    out = np.empty((spec.groups, t * h, spec.cg, spec.kg), cdtype)
    tau = 2 * np.pi / t
    ev = tau * (np.outer(np.arange(spec.s) * spec.dw, np.arange(h)) % t)  # (s, h) angles
    eu = tau * (np.outer(np.arange(t), np.arange(spec.r) * spec.dh) % t)  # (t, r)
    wt = w.reshape(spec.groups, spec.kg, spec.cg, spec.r, spec.s).transpose(0, 2, 3, 4, 1)
    _spectra(np.ascontiguousarray(wt, dtype=np.float64), np.cos(ev), np.sin(ev), np.cos(eu),
             np.sin(eu),
             out.view(np.dtype(spec.dtype)).reshape(spec.groups, t * h, spec.cg, 2 * spec.kg))
    return out


@njit(parallel=True, cache=True, fastmath=True)
def _spectra(wt, cv, sv, cu, su, out):
    """The conjugated spectra of every filter into ``out`` (groups, F, cg, 2 kg), float64 sums.

    ``wt`` (groups, cg, r, s, kg) float64: the taps with output channels innermost.
    ``conj(W[u, v]) = sum_a e^{+i u a} sum_b w[a, b] e^{+i v b}`` (angles ``cv + i sv`` of
    (s, H), ``cu + i su`` of (T, r)): per (group, channel) job a row pass over the taps, then
    a column pass, every innermost loop over output channels (the unit stride of ``out``).
    """
    groups, cg, r, s, kg = wt.shape
    hh = cv.shape[1]
    t2 = cu.shape[0]
    for job in prange(groups * cg):
        g, c = job // cg, job % cg
        row = np.zeros((r, hh, 2, kg))
        acc = np.empty((2, kg))
        for a in range(r):
            for v in range(hh):
                for b in range(s):
                    tap = wt[g, c, a, b]
                    for kk in range(kg):
                        row[a, v, 0, kk] += tap[kk] * cv[b, v]
                        row[a, v, 1, kk] += tap[kk] * sv[b, v]
        for u in range(t2):
            for v in range(hh):
                acc[:] = 0.0
                for a in range(r):
                    ca, sa = cu[u, a], su[u, a]
                    for kk in range(kg):
                        acc[0, kk] += ca * row[a, v, 0, kk] - sa * row[a, v, 1, kk]
                        acc[1, kk] += ca * row[a, v, 1, kk] + sa * row[a, v, 0, kk]
                dst = out[g, u * hh + v, c]
                for kk in range(kg):
                    dst[2 * kk] = acc[0, kk]
                    dst[2 * kk + 1] = acc[1, kk]


def workspace(spec, params=None):
    """Bytes `prepare` and one call allocate: the filter spectra and the float64 taps they are
    built from, the input and output spectra, and each thread's transform scratch."""
    geo = _geometry(spec, params)
    t, h = geo["t"], geo["t"] // 2 + 1
    b = spec.itemsize
    spectra = 2 * b * t * h * spec.cg * spec.k + 16 * spec.k * spec.cg * spec.r * spec.s
    return spectra + sum(math.prod(sh) * b + 128 for sh in geo["shapes"].values())


def prepare(w, spec, params=None):
    """Choose the tile, transform the filters once and allocate the spectra.

    Returns ``compute(x, out)`` with phases ``input transform``, ``multiply`` and ``output
    transform``; ``compute.plan`` names the tile and the tiling, ``compute.params`` the
    parameters that ran.
    """
    geo = _geometry(spec, params)
    dtype = np.dtype(spec.dtype)
    t, mh, mw, block = geo["t"], geo["mh"], geo["mw"], geo["block"]
    rows, cols, icols, irows = _dft(t, mh, mw, dtype)
    ws = _filter_spectra(w, spec, t)
    xs, ys, scratch = carve(dtype, *geo["shapes"].values())
    cx = xs.view(ws.dtype)
    cy = ys.view(ws.dtype)
    pt, pl = spec.pads[0], spec.pads[2]
    nth, ntw = geo["nth"], geo["ntw"]

    def input_transform(x, out):
        with single_threaded_blas():
            _forward(x, pt, pl, mh, mw, nth, ntw, block, rows, cols, scratch, xs)

    def multiply(x, out):
        with single_threaded_blas():
            _multiply(cx, ws, cy)

    def output_transform(x, out):
        with single_threaded_blas():
            _inverse(ys, nth, ntw, block, icols, irows, scratch, out)

    compute = with_phases(("input transform", input_transform), ("multiply", multiply),
                          ("output transform", output_transform))
    compute.plan = dict(tile=t, outputs=(mh, mw), tiles=(nth, ntw), block=block)
    compute.params = geo["params"]
    return compute
