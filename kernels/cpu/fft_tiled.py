"""Tiled FFT convolution: small fixed transforms (8 x 8, 16 x 16, 32 x 32) over blocks of tiles.

Algorithm
---------
Overlap-save over T x T input tiles, as the fastest CPU implementations build FFT convolution
(NNPACK's FFT-8x8 and FFT-16x16; Zlateski, Jia, Li & Durand, "The anatomy of efficient FFT
and Winograd convolutions on modern CPUs", ICS 2019).  Each output tile of m x m outputs,
``m = T - (r_eff - 1)``, is the valid part of the circular cross-correlation of a T x T
input tile with the (dilated) filter: ``Z = X conj(W)`` frequency by frequency, where a
tile's spectrum has ``F = T (T/2 + 1)`` frequencies (real input).  Per frequency and group
the sum over input channels is one complex GEMM, ``Y[f] (k x tiles) = W[f] (k x c) @ X[f]
(c x tiles)``: a register tile of output channels x tiles accumulates over all input
channels, with the filter spectra packed in `prepare` in the order the micro-kernel reads
them (NNPACK's "tuple GEMM": nothing is packed per call, where BLAS' cgemm repacks the filter
spectra of every frequency on every call and ran 1.4-1.6x slower on VGG's and AlexNet's deep
layers).  Two forms (`_multiply`): complex products, four fused multiply-adds each, or
Gauss's three real products (`_gauss_tile`), from enough tiles that streaming its 1.5x
filter spectra does not bound it (the parameter ``gauss``).

The transforms are not FFT library calls, which pay a fixed cost per small plane: they run
over a block of L planes (tiles x channels) at once, the planes innermost, so that every
step is a loop over vectors of planes.  The forward row pass (real to complex) is the small
dense DFT ``(2H, T) @ (T, L)`` once per patch row (H = T/2 + 1 frequencies, re/im
interleaved; the patch rows enter transposed), a BLAS GEMM; the column pass is a radix-2
FFT of the H complex columns in place (`_dif_columns`: about 5 T log2 T flops a column
where the DFT as a GEMM took 8 T^2, which made the transforms as slow as the channel GEMMs
with 16 registers).  Each frequency's run of tiles then leaves for the spectra as whole
vectors.  The inverse runs the column FFT in place on the multiply's output, then its row
pass (complex to real, once per output row, keeping the m valid columns) as the GEMM
``(L, 2H) @ (2H, m)`` with ``1 / T^2`` folded in.

The tile size (`choose_tile`) minimises a flop count: the channel GEMM's, the transforms',
and the filter spectra's bytes at ``byte_cost`` flops each (``F c k`` complex numbers,
written in `prepare` and streamed through the GEMMs once a call).  Large tiles need fewer
multiplies per output (16 x 16: 144 complex products per 196 outputs of a 3 x 3 filter;
8 x 8: 40 per 36) but more spectra: at batch 1 on 512 -> 512 @7 the 16 x 16 spectra of a
3 x 3 layer are 302 MB, which is why the whole-image `fft` stays the family's choice on
deep, small layers.

Layout (``nt`` tiles = images x tile rows x tile columns, ``H = T//2 + 1``, ``F = T H``)
-------------------------------------------------------------------------------
``X`` (groups, F, P, ccg, ntp) real and imaginary planes (and their sums: P = 3 in Gauss's form)
    Input spectra, written by `_forward`: per job (block of 16 tiles, group, channel block)
    the T x T patches are gathered (padding read as zeros, never materialised), transformed
    and stored frequency by frequency as runs of 16 tiles, by non-temporal
    stores when the spectra outgrow the caches (`_streams`: a run is one cache line, and 288
    lines a job, one per frequency and part, cost a read for ownership each otherwise).
    ``ntp``: the tiles rounded up to the register tile's columns (the padding columns stay
    zero).
``W`` (groups, F, nkb, ccg, 2 kb), in Gauss's form (groups, F, nkb, 3, ccg, kb)
    Conjugated filter spectra packed by blocks of ``kb`` output channels (`_filter_spectra`),
    computed in float64 in `prepare` (`_spectra`) and rounded once.
``Y`` (groups, tile blocks, channel blocks, 2, F, lk, 16)
    The multiply's result, stored (non-temporal, as ``X``) in the inverse's jobs: one job
    (block of 16 tiles, group, block of ``lk`` output channels) transforms one contiguous
    block in place, with no gather.
Output: `_inverse` per job: column FFTs, the row GEMMs, crop into ``out`` (partial tiles at
the right and bottom edges write their valid part).

Speed and error
---------------
Measured figures (per phase, against `fft` and Winograd F(4, 3)) are in
docs/kernel-measurements.md; `benchmarks/speed.py --preset nnpack-table` compares them on any
machine.  Error (max|out - ref| / max|ref| against the float64 oracle, normal data): 1-3e-7
in float32 on the kernel test cases, every tile size; ~1e-15 in float64.

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
from convbench_kernels.cpu.common import carve, pooled_empty, single_threaded_blas
from convbench_kernels.cpu.microkernel import (
    cfma_tile,
    combine_lanes,
    copy_lanes,
    fma_tile,
    stack_tile,
)
from convbench_kernels.cpu.target import Target, current, resolve, token

TILES = (8, 16, 32)
# Tiles a transform job takes at once: its spectra leave as runs of 16 tiles, a cache line of
# float32 (the GEMMs' column axis).
TILE_BLOCK = 16


def defaults(target: Target) -> dict:
    """``block``: planes (tiles x channels) a transform job takes at once; its buffers, about
    ``6 T^2 block`` floats (patch, row pass, column pass), stay within a quarter of the L2 for
    64 planes of 16 x 16 on a 1 MB L2.
    ``tile``: 0 lets `choose_tile` pick the tile size, else that size (an error where the
    filter does not fit).  ``byte_cost``: what one byte of filter spectra costs in `_cost`,
    in flops of the channel GEMM (larger: smaller tiles where the spectra dominate).
    ``gauss``: the tiles from which the channel GEMMs run in Gauss's three-multiply form
    (`_gauss_tile`) rather than as complex products (`_complex_tile`), 0 never.  Gauss's
    form streams 1.5x the filter spectra for 0.75x the multiply-adds, so it needs tiles
    enough to stay compute-bound: 48 (it won from 64 tiles and lost at 16 with 16 and 32
    registers alike; measured in `_gauss_tile`)."""
    l2 = target.l2_bytes or 1 << 20
    return {"block": 64 if l2 >= 1 << 20 else 32, "tile": 0, "byte_cost": 4.0, "gauss": 48}


def space(target: Target) -> list[dict]:
    """Jobs of 32 to 128 planes and the spectra's byte cost quartered or quadrupled in the
    target's form of the channel GEMMs, and the other form at the default job and cost (the
    tile stays the model's: a forced size would not fit every filter)."""
    base = defaults(target)
    return ([{**base, "block": b, "byte_cost": c} for b in (32, 64, 128)
             for c in (1.0, 4.0, 16.0)] + [{**base, "gauss": 0}])


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
    """Outputs of a tile (rows, columns), tiles of an image (rows, columns), and tiles in all
    (``nt``) at tile size ``t``."""
    re, se = _extent(spec)
    mh, mw = t - re + 1, t - se + 1
    nth, ntw = -(-spec.oh // mh), -(-spec.ow // mw)
    return mh, mw, nth, ntw, spec.n * nth * ntw


def _cost(spec, t, byte_cost, gauss):
    """Relative cost of tile size ``t``, in flops: the channel GEMM's (8 a complex
    multiply-add, 6 in Gauss's form, over the tiles rounded up to the register tile's
    columns), the transforms' (both GEMMs of each input and output plane), and the filter
    spectra's bytes (written, then streamed through the GEMMs; three real planes in Gauss's
    form, two otherwise) at ``byte_cost`` flops each."""
    nt = _tiles(spec, t)[-1]
    gauss = _gauss_form(nt, gauss)
    _, nv, vl = register_tile(nt, spec.itemsize, gauss)
    h = t // 2 + 1
    parts = 3 if gauss else 2
    gemm = 2.0 * parts * t * h * -(-nt // (nv * vl)) * nv * vl * spec.cg * spec.k
    transforms = 2.0 * nt * (spec.c + spec.k) * (t * t * 2 * h + 2 * t * t * 2 * h)
    spectra = parts * t * h * spec.cg * spec.k * spec.itemsize * 2
    return gemm + transforms + byte_cost * spectra


def _gauss_form(nt, from_tiles) -> bool:
    """Whether ``nt`` tiles run Gauss's form, which the parameter ``gauss`` allows from
    ``from_tiles`` tiles (0: never)."""
    return bool(from_tiles) and nt >= from_tiles


def choose_tile(spec, params=None) -> int:
    """The tile size of ``spec``: forced by ``params["tile"]``, else the cheapest by `_cost`
    among the sizes whose half holds the dilated filter (at least half of a tile's rows and
    columns are outputs, so that a tile is not mostly overlap)."""
    p = _params(params)
    re, se = _extent(spec)
    fits = [t for t in TILES if max(re, se) <= t // 2]
    if p["tile"]:
        if p["tile"] not in fits:
            raise ValueError(f"fft_tiled tile must be one of {fits} for a {re}x{se} filter, "
                             f"got {p['tile']}")
        return p["tile"]
    return min(fits, key=lambda t: _cost(spec, t, p["byte_cost"], p["gauss"]))


# ----------------------------------------------------------------------------- matrices
@lru_cache(maxsize=16)
def _dft(t, mw, dtype):
    """The read-only tables of one tile size (see the module docstring).

    Returns ``rows (2h, t)`` (the forward row DFT, re/im interleaved rows), ``twiddles (2, 2,
    t/2)`` (``e^{-2 pi i k/t}`` for the forward column pass, then ``e^{+2 pi i k/t}`` for the
    inverse: real parts, imaginary parts), ``order (t,)`` (the row of `_dif_columns`' output
    holding frequency u: u's bits reversed) and ``irows (2h, mw)`` (the inverse row DFT, valid
    outputs only, ``1 / t^2`` folded in; the rows of real parts, then of imaginary parts).
    Angles are reduced modulo ``t`` in integers first.
    """
    h = t // 2 + 1
    j = np.arange(t)
    v = np.arange(h)
    ang = 2 * np.pi * (np.outer(j, v) % t) / t  # (t, h)
    rows = np.empty((t, 2 * h))
    rows[:, 0::2], rows[:, 1::2] = np.cos(ang), -np.sin(ang)
    k = 2 * np.pi * np.arange(t // 2) / t
    twiddles = np.array([[np.cos(k), -np.sin(k)], [np.cos(k), np.sin(k)]])
    bits = t.bit_length() - 1
    order = np.array([int(format(u, f"0{bits}b")[::-1], 2) for u in range(t)], dtype=np.int64)
    weight = np.where((v == 0) | (2 * v == t), 1.0, 2.0) / (t * t)
    ang_i = 2 * np.pi * (np.outer(v, np.arange(mw)) % t) / t  # (v, j)
    irows = np.empty((2 * h, mw))
    irows[:h] = weight[:, None] * np.cos(ang_i)
    irows[h:] = -weight[:, None] * np.sin(ang_i)
    out = (*(np.ascontiguousarray(a, dtype=dtype) for a in (rows.T, twiddles)), order,
           np.ascontiguousarray(irows, dtype=dtype))
    for a in out:
        a.flags.writeable = False
    return out


# ----------------------------------------------------------------------------- kernels
@njit(cache=True, inline="always")
def _jobs(nt, tb, groups, ch, lc):
    """Transform jobs: blocks of ``tb`` of the ``nt`` tiles, then groups, then blocks of
    ``lc`` of a group's ``ch`` channels."""
    return -(-nt // tb) * groups * -(-ch // lc)


@njit(cache=True, inline="always")
def _job(job, nt, tb, groups, ch, lc):
    """(first tile, tiles, group, first channel, channels) of transform job ``job``."""
    nb = -(-ch // lc)
    t0, g, c0 = (job // (groups * nb)) * tb, (job // nb) % groups, (job % nb) * lc
    return t0, min(tb, nt - t0), g, c0, min(lc, ch - c0)


@njit(cache=True, inline="always")
def _dif_columns(re, im, tw):
    """The DFT along the first axis of the complex column ``re + i im`` (T, L) (T rows of L
    planes), in place: ``X[u] = sum_i tw^(u i) x[i]`` with ``tw`` (2, T/2) the powers of the
    root (`_dft`), left in row ``order[u]``.  Radix-2 decimation in frequency, every
    butterfly a loop over the L planes (vectors); a column's T rows stay in the L1 cache
    through the log2 T passes.  About 5 T log2 T flops a column where a DFT as a GEMM takes
    8 T^2."""
    t, nl = re.shape
    m = t
    while m >= 2:
        h = m // 2
        step = t // m
        for k in range(h):
            wr, wi = tw[0, k * step], tw[1, k * step]
            for a in range(k, t, m):
                ar, ai, br, bi = re[a], im[a], re[a + h], im[a + h]
                for q in range(nl):
                    dr = ar[q] - br[q]
                    di = ai[q] - bi[q]
                    ar[q] += br[q]
                    ai[q] += bi[q]
                    br[q] = dr * wr - di * wi
                    bi[q] = dr * wi + di * wr
        m = h


@njit(cache=True, inline="always")
def _store_run(xf, d, im, rf, ro, io, n, sums, stream, lanes):
    """One frequency of ``n`` tiles into the spectra: ``xf[d:d + n]`` (real parts) and ``xf[d +
    im:d + im + n]`` (imaginary) from ``rf[ro:]`` and ``rf[io:]``, and with ``sums`` (Gauss's
    form) their sums at ``xf[d + 2 im:]``.  Whole vectors (`copy_lanes`, `combine_lanes`,
    non-temporal with ``stream``) when ``n`` is a multiple of the vector, else scalars."""
    vl = len(lanes)
    if n % vl == 0:
        for q in range(0, n, vl):
            copy_lanes(xf, d + q, rf, ro + q, stream, lanes)
            copy_lanes(xf, d + im + q, rf, io + q, stream, lanes)
            if sums:
                combine_lanes(xf, d + 2 * im + q, rf, ro + q, rf, io + q, 1.0, stream, lanes)
    else:
        for q in range(n):
            xf[d + q] = rf[ro + q]
            xf[d + im + q] = rf[io + q]
            if sums:
                xf[d + 2 * im + q] = rf[ro + q] + rf[io + q]


@njit(parallel=True, cache=True)
def _forward(x, pt, pl, mh, mw, nth, ntw, tb, lc, rows, tw, order, scratch, xs, stream,
             lanes):
    """Input spectra ``xs`` (groups, F, P, ccg, ntp >= nt) of every tile: real and imaginary
    planes, and with ``P = 3`` (Gauss's form) their sums.

    One job is (block of ``tb`` tiles, group, block of ``lc`` channels): its ``tb lc`` planes
    (plane ``l tb + tt``) are gathered, transformed (row GEMMs, column FFTs) and stored
    (`_store_run`), each frequency and channel as a run of ``tb`` tiles (a cache line of
    float32 at 16), non-temporal with ``stream``.  Each thread owns ``scratch[thread]`` and a
    contiguous run of jobs.
    """
    n, c, h, w = x.shape
    groups, f, parts, ccg, ntp = xs.shape
    xf = xs.reshape(-1)
    nt = nth * ntw * n
    hh2, t2 = rows.shape
    hh = hh2 // 2
    jobs = _jobs(nt, tb, groups, ccg, lc)
    nch = min(scratch.shape[0], jobs)
    for ch in prange(nch):
        sc = scratch[ch]
        for job in range(ch * jobs // nch, (ch + 1) * jobs // nch):
            t0, ntt, g, c0, ncc = _job(job, nt, tb, groups, ccg, lc)
            planes = ntt * ncc
            patch = sc[:t2 * planes * t2].reshape(t2, planes, t2)
            for tt in range(ntt):
                t = t0 + tt
                b, ti, tj = t // (nth * ntw), (t // ntw) % nth, t % ntw
                y0, x0 = ti * mh - pt, tj * mw - pl
                jlo, jhi = max(0, -x0), min(t2, w - x0)
                for i in range(t2):
                    yy = y0 + i
                    for ll in range(ncc):
                        dst = patch[i, ll * ntt + tt]
                        if yy < 0 or yy >= h or jhi <= jlo:
                            dst[:] = 0
                            continue
                        src = x[b, g * ccg + c0 + ll, yy]
                        dst[:jlo] = 0
                        for j in range(jlo, jhi):
                            dst[j] = src[x0 + j]
                        dst[jhi:] = 0
            o1 = t2 * planes * t2
            # the row pass, one GEMM: rp[v, re/im, i, plane] (row i of every patch at once)
            rp = sc[o1:o1 + t2 * 2 * hh * planes].reshape(hh, 2, t2, planes)
            np.dot(rows, patch.reshape(t2 * planes, t2).T, rp.reshape(2 * hh, t2 * planes))
            for v in range(hh):
                _dif_columns(rp[v, 0], rp[v, 1], tw[0])
            rf = rp.reshape(-1)
            for u in range(t2):
                for v in range(hh):
                    ro = (2 * v * t2 + order[u]) * planes  # X[u, v]: real, then imaginary
                    io = ro + t2 * planes
                    d = ((g * f + u * hh + v) * parts * ccg + c0) * ntp + t0  # xs[g, f, 0, c0, t0]
                    for ll in range(ncc):
                        _store_run(xf, d + ll * ntp, ccg * ntp, rf, ro + ll * ntt, io + ll * ntt,
                                   ntt, parts == 3, stream, lanes)


@njit(parallel=True, cache=True)
def _inverse(ys, nt, mh, nth, ntw, tw, order, irows, scratch, out):
    """Inverse transform of every (tile block, group, output-channel block) job and crop into
    ``out``.  ys (groups, tile blocks, channel blocks, 2, F, lk, tb): one job's spectra are one
    contiguous block (real, then imaginary parts; frequencies ``v T + u``; the ``lk tb``
    planes, plane ``l tb + tt``), transformed in place by the column pass (`_dif_columns`,
    ``tw`` the inverse's roots), which leaves output row y of every plane in row ``order[y]``.
    The row pass (complex to real, the ``mw`` valid columns) is then one GEMM, the block as a
    (2H, T L) matrix transposed times ``irows`` (2H, mw; rows: real parts, then imaginary),
    whose result has each output row's columns contiguous for the crop."""
    n, k, oh, ow = out.shape
    groups, _, _, _, f, lk, tb = ys.shape
    kg = k // groups
    hh2, mw = irows.shape
    hh = hh2 // 2
    t2 = f // hh
    planes = lk * tb
    jobs = _jobs(nt, tb, groups, kg, lk)
    nch = min(scratch.shape[0], jobs)
    for ch in prange(nch):
        sc = scratch[ch]
        for job in range(ch * jobs // nch, (ch + 1) * jobs // nch):
            t0, ntt, g, k0, nkk = _job(job, nt, tb, groups, kg, lk)
            blk = ys[g, t0 // tb, k0 // lk].reshape(2, hh, t2, planes)
            for v in range(hh):
                _dif_columns(blk[0, v], blk[1, v], tw)
            res = sc[:t2 * planes * mw].reshape(t2, planes, mw)
            np.dot(blk.reshape(2 * hh, t2 * planes).T, irows, res.reshape(t2 * planes, mw))
            for tt in range(ntt):
                t = t0 + tt
                b, ti, tj = t // (nth * ntw), (t // ntw) % nth, t % ntw
                i0, j0 = ti * mh, tj * mw
                ni, nj = min(mh, oh - i0), min(mw, ow - j0)
                for ll in range(nkk):
                    plane = out[b, g * kg + k0 + ll]
                    for y in range(ni):
                        plane[i0 + y, j0:j0 + nj] = res[order[y], ll * tb + tt, :nj]


# ----------------------------------------------------------------------------- channel GEMMs
@njit(parallel=True, cache=True)
def _multiply(wp, xs, ys, hh, stream, form, rows, vecs, lanes):
    """``Y[g, f] = W[g, f] @ X[g, f]`` for every (group, frequency), complex, in register
    tiles of ``kb = len(rows)`` output channels x ``cols`` tiles that accumulate over all
    input channels, then leave vector by vector into ys (`_y_at`; a vector never straddles
    two tile blocks), by non-temporal stores with ``stream``.  ``hh``: H, the frequencies of
    a spectrum's row.

    wp (groups, F, nkb, P, cg, kb): the filter spectra packed in `prepare` by blocks of kb
    output channels (`_filter_spectra`); xs (groups, F, P, cg, ntp): the input spectra, tiles
    innermost, ``ntp`` a multiple of ``cols`` (padding columns are zero).  ``form``: a
    token of P (`token`), so that each compiled form holds one tile's code: P = 2, complex
    products (`_complex_tile`); P = 3, Gauss's three-multiply form (`_gauss_tile`).  (With P
    read from wp, each tile shape compiled both tiles, and the kernel took twice as long,
    11.3 s of the family's 27 cold.)
    """
    groups, f, nkb, _, cg, kb = wp.shape
    ntp = xs.shape[4]
    _, nbt, nkl, _, _, lk, tb = ys.shape
    yf = ys.reshape(-1)
    cols = len(vecs) * len(lanes)
    for job in prange(groups * f):
        g, fi = job // f, job % f
        fo = _by_columns(fi, f, hh)
        xf, wf = xs[g, fi].reshape(-1), wp[g, fi].reshape(-1)
        for b in range(nkb):
            for t0 in range(0, ntp, cols):
                place = (g, fo, b * kb, kb, t0, f, nbt, nkl, lk, tb)
                if len(form) == 3:
                    _gauss_tile(yf, xf, wf, b, cg, ntp, place, stream, rows, vecs, lanes)
                else:
                    _complex_tile(yf, xf, wf, b, cg, ntp, place, stream, rows, vecs, lanes)


@njit(cache=True, inline="always")
def _complex_tile(yf, xf, wf, b, cg, ntp, place, stream, rows, vecs, lanes):
    """One tile of `_multiply` as complex products: four fused multiply-adds each
    (`cfma_tile`), the filter spectra's planes c and d broadcast."""
    g, fo, k0, kb, t0, f, nbt, nkl, lk, tb = place
    accr = stack_tile(xf, rows, vecs, lanes)
    acci = stack_tile(xf, rows, vecs, lanes)
    _zero(accr)
    _zero(acci)
    for c in range(cg):
        cfma_tile(accr, acci, xf, c * ntp + t0, (cg + c) * ntp + t0, wf, (2 * b * cg + c) * kb,
                  ((2 * b + 1) * cg + c) * kb, rows, vecs, lanes)
    _store_tile(yf, 0, accr, accr, 0.0, place, stream, lanes)
    _store_tile(yf, f * lk * tb, acci, acci, 0.0, place, stream, lanes)  # imaginary parts


@njit(cache=True, inline="always")
def _gauss_tile(yf, xf, wf, b, cg, ntp, place, stream, rows, vecs, lanes):
    """One tile of `_multiply` in Gauss's three-multiply form: with ``W = c + i d`` and ``X =
    a + i b``, ``Re Y = sum c (a + b) - sum (c + d) b`` and ``Im Y = sum c (a + b) + sum (d -
    c) a``: three real GEMMs, three quarters of the multiply-adds of four, each in a real
    register tile (`fma_tile`).  The filter spectra's planes are c, c + d and d - c, the
    input spectra's a, b and a + b.  The first sum leaves the registers while the other two
    accumulate (once a tile, not once a channel).

    Measured on NNPACK's layers at batch 16, the multiply alone (ms, complex / Gauss): on AVX2
    (16 registers; 6 x 1 complex, 6 x 2 real tiles) VGG-A conv3.1 (256 tiles) 51.7 / 44.7,
    conv3.2 101 / 91, conv4.1 (64) 48.7 / 42.1, conv4.2 95 / 84, but AlexNet conv4 (16
    tiles) 10.0 / 13.9: the filter spectra, 1.5x as many bytes, then bound it from memory.
    With AVX-512 (32 registers; 6 x 2 complex, 6 x 4 real) conv3.1 26.9 / 23.3, conv3.2 55.2 /
    45.0, conv4.1 24.7 / 21.4, conv4.2 50.6 / 44.0, OverFeat conv5 54.0 / 43.0, VGG-A conv2
    (1024 tiles, 64 channels) 36.2 / 36.9, AlexNet conv4 8.9 / 22.0.
    """
    g, fo, k0, kb, t0, f, nbt, nkl, lk, tb = place
    first = stack_tile(xf, rows, vecs, lanes)
    acc = stack_tile(xf, rows, vecs, lanes)
    _zero(first)
    _zero(acc)
    for c in range(cg):  # c (a + b)
        fma_tile(first, xf, (2 * cg + c) * ntp + t0, wf, (3 * b * cg + c) * kb, 1, rows, vecs,
                 lanes)
    for c in range(cg):  # (c + d) b
        fma_tile(acc, xf, (cg + c) * ntp + t0, wf, ((3 * b + 1) * cg + c) * kb, 1, rows, vecs,
                 lanes)
    _store_tile(yf, 0, first, acc, -1.0, place, stream, lanes)
    _zero(acc)
    for c in range(cg):  # (d - c) a
        fma_tile(acc, xf, c * ntp + t0, wf, ((3 * b + 2) * cg + c) * kb, 1, rows, vecs, lanes)
    _store_tile(yf, f * lk * tb, first, acc, 1.0, place, stream, lanes)  # imaginary parts


@njit(cache=True, inline="always")
def _by_columns(fi, f, hh):
    """Frequency ``fi = u H + v`` of the spectra numbered ``v T + u``, as ys holds them."""
    return (fi % hh) * (f // hh) + fi // hh


@njit(cache=True, inline="always")
def _y_at(g, t, kl, ll, fo, f, nbt, nkl, lk, tb):
    """Where tile ``t``'s real part of output channel ``kl lk + ll`` at frequency ``fo = v T +
    u`` goes in ys (groups, tile blocks, channel blocks, 2, F, lk, tb): `_inverse`'s blocks,
    real parts then imaginary parts (``F lk tb`` further), frequencies by columns of the
    spectrum (the layout its row pass reads as one matrix)."""
    return ((((g * nbt + t // tb) * nkl + kl) * 2 * f + fo) * lk + ll) * tb + t % tb


@njit(cache=True, inline="always")
def _zero(tile):
    """Zero a `stack_tile` (its shape a compile-time constant: the loops unroll)."""
    for r in range(tile.shape[0]):
        for j in range(tile.shape[1]):
            tile[r, j] = 0


@njit(cache=True, inline="always")
def _store_tile(yf, part, first, acc, sign, place, stream, lanes):
    """A (kb, cols) tile of output channels ``k0 + r`` x tiles ``t0 + j`` at frequency ``fo``
    (``place``: g, fo, k0, kb, t0 and ys' sizes F, nbt, nkl, lk, tb) into its places in ys
    (`_y_at`), ``part`` floats further (0: real parts, ``F lk tb``: imaginary): ``first`` if
    ``sign`` is 0, else ``first + sign acc``.

    ``kb`` is the filter spectra's block, a run-time value equal to the tile's rows: indexed
    by it, the tiles stay in memory between `_gauss_tile`'s passes (LLVM keeps them in
    registers only inside the loop that accumulates them).  With the rows a compile-time
    constant the first sum was kept in registers across the next pass too, which then
    spilled: twice as slow with 32 registers."""
    g, fo, k0, kb, t0, f, nbt, nkl, lk, tb = place
    vl = len(lanes)
    cols = first.shape[1]
    for r in range(kb):
        kl, ll = (k0 + r) // lk, (k0 + r) % lk
        for j in range(0, cols, vl):
            o = _y_at(g, t0 + j, kl, ll, fo, f, nbt, nkl, lk, tb) + part
            if sign == 0:
                copy_lanes(yf, o, first, r * cols + j, stream, lanes)
            else:
                combine_lanes(yf, o, first, r * cols + j, acc, r * cols + j, sign, stream,
                              lanes)


# ----------------------------------------------------------------------------- entry point
def _geometry(spec, params=None):
    """Tile size, outputs per tile, tile counts and the workspace shapes (dtype elements)."""
    p = _params(params)
    t = choose_tile(spec, p)
    mh, mw, nth, ntw, nt = _tiles(spec, t)
    h = t // 2 + 1
    f = t * h
    gauss = _gauss_form(nt, p["gauss"])
    kb, nv, vl = register_tile(nt, spec.itemsize, gauss)
    tb = min(TILE_BLOCK, nt)  # the forward transform's tiles a job
    yb = max(TILE_BLOCK, vl)  # the inverse's (a whole number of vectors)
    lc = max(1, min(p["block"] // tb, spec.cg))
    lk = max(1, min(p["block"] // yb, spec.kg))
    block = max(tb * lc, yb * lk)  # planes per job
    ntp = -(-nt // (nv * vl)) * nv * vl
    nkb = -(-spec.kg // kb)
    threads = numba.config.NUMBA_NUM_THREADS
    parts = 3 if gauss else 2
    shapes = {"wp": (spec.groups, f, nkb, parts, spec.cg, kb),
              "xs": (spec.groups, f, parts, spec.cg, ntp),
              "ys": (spec.groups, -(-ntp // yb), -(-nkb * kb // lk), 2, f, lk, yb),
              # forward: patch, then the row pass (the column pass in place); inverse: rows
              "scratch": (threads, block * (t * t + 2 * t * h))}
    return dict(t=t, mh=mh, mw=mw, nth=nth, ntw=ntw, tb=tb, lc=lc, lk=lk, nt=nt, gauss=gauss,
                tile=(kb, nv, vl), shapes=shapes, params=p)


def register_tile(nt, itemsize, gauss=False) -> tuple[int, int, int]:
    """``(kb, nv, vl)``: the channel GEMMs' tile of ``kb`` output channels x ``nv`` vectors of
    ``vl`` tiles.  ``kb``: as many rows as the register file holds beside the input vectors
    and one broadcast: ``2 kb nv`` accumulators and ``2 nv`` inputs for the complex tile
    (`cfma_tile`: 6 x 2 or 14 x 1 with 32 registers, 6 x 1 with 16), ``kb nv`` and ``nv`` for
    Gauss's real tiles (`fma_tile`: 6 x 2 with 16 registers, 6 x 4 with 32).  Two vectors a
    row (four in Gauss's form with 32 registers) only where that leaves at least four complex
    rows or six real ones (a row block re-reads the input spectra, whose traffic per
    multiply-add falls with the rows) and the narrower tile would not waste less than three
    quarters as many padding columns.
    Measured on 144 frequencies of 512 -> 512 channels (AVX-512): 64 tiles 293 GFLOP/s at 13
    x 1 and 268 at 6 x 2, 256 tiles 202 and 260, against 180-218 for OpenBLAS' cgemm.  With
    16 registers (AVX2), multiply ms at 2 x 2 / 6 x 1 on NNPACK's layers at batch 16: AlexNet
    conv3 21.0 / 13.4, conv5 17.8 / 9.7, conv4 11.8 / 12.6, VGG-A conv3.1 (256 tiles) 63.0 /
    63.1; Gauss's real tiles on VGG-A conv4.1, 6 x 2 / 5 x 2 / 4 x 2 / 12 x 1: 45 / 48 / 54 /
    54 (docs/kernel-measurements.md)."""
    target = current()
    vl = target.lanes(itemsize)
    regs = target.vector_registers
    per = 1 if gauss else 2  # accumulators and inputs per vector of a row

    def rows(nv):
        return max((regs - per * nv - 1) // (per * nv), 1)

    def waste(nv):
        return -(-nt // (nv * vl)) * nv * vl - nt

    wide = 2 * (1 + (gauss and regs >= 32))
    enough = 6 if gauss else 4
    nv = 1 if rows(wide) < enough or waste(1) < 0.75 * waste(wide) else wide
    return rows(nv), nv, vl


def _filter_spectra(w, spec, t, out, kb, gauss):
    """``conj(DFT_t(w[g k, c])) = c + i d`` of the dilated taps into ``out``, packed in blocks
    of ``kb`` output channels: (groups, F, nkb, P, cg, kb), the planes c and d for complex
    products (P = 2), c, c + d and d - c for Gauss's form (P = 3; `_multiply`), channels
    past ``kg`` zero.  Computed in float64 from the taps alone and rounded once
    (`_spectra`)."""
    h = t // 2 + 1
    tau = 2 * np.pi / t
    ev = tau * (np.outer(np.arange(spec.s) * spec.dw, np.arange(h)) % t)  # (s, h) angles
    eu = tau * (np.outer(np.arange(t), np.arange(spec.r) * spec.dh) % t)  # (t, r)
    rows = np.empty((h, 2, spec.s))  # e^{+i v b}: row (v, re/im), column b
    rows[:, 0], rows[:, 1] = np.cos(ev).T, np.sin(ev).T
    cu, su = np.cos(eu), np.sin(eu)
    cols = np.block([[cu, -su], [su, cu]])  # (2t, 2r): e^{+i u a} on (re, im) rows
    n = spec.cg * kb
    scratch = pooled_empty((numba.config.NUMBA_NUM_THREADS,
                            n * (spec.s * spec.r + 2 * h * spec.r + 2 * t)), np.float64)
    with single_threaded_blas():  # its GEMMs run inside the parallel jobs
        _spectra(np.ascontiguousarray(w), spec.groups, rows.reshape(2 * h, spec.s), cols,
                 out.reshape(*out.shape[:3], -1), kb, gauss, scratch)


@njit(parallel=True, cache=True)
def _spectra(w, groups, rows, cols, out, kb, gauss, scratch):
    """The conjugated spectra of every filter into ``out`` (groups, F, nkb, the P planes of
    `_filter_spectra`, flat), float64 sums.

    ``w`` (k, cg, r, s): the layer's taps, ``groups`` groups of output channels.
    ``conj(W[u, v]) = sum_a e^{+i u a} sum_b w[a, b] e^{+i v b}``: ``rows`` (2H, s) the
    second factor (rows v re, v im), ``cols`` (2T, 2r) the first on real and imaginary parts.
    One job per (group, block of kb output channels), in its thread's ``scratch``: the
    block's taps gathered as (s, r, cg, kb), the row pass one GEMM into (H, 2, r, cg kb),
    then per column v of the spectrum one GEMM into (2T, cg kb), whose rows are whole planes
    of ``out`` (scalar loops over one channel's kb outputs took 0.8-1.2 ms for 64 -> 64 at 16
    x 16; every loop here is over cg kb numbers or a BLAS call).
    """
    k, cg, r, s = w.shape
    kg = k // groups
    nkb = out.shape[2]
    hh2 = rows.shape[0]
    hh = hh2 // 2
    t2 = cols.shape[0] // 2
    n = cg * kb
    jobs = groups * nkb
    nch = min(scratch.shape[0], jobs)
    for ch in prange(nch):
        sc = scratch[ch]
        taps = sc[:s * r * n].reshape(s, r * n)
        row = sc[s * r * n:(s + hh2) * r * n].reshape(hh, 2 * r, n)
        res = sc[(s + hh2) * r * n:(s + hh2) * r * n + 2 * t2 * n].reshape(2 * t2, n)
        for job in range(ch * jobs // nch, (ch + 1) * jobs // nch):
            g, b = job // nkb, job % nkb
            nk = min(kb, kg - b * kb)
            tp = taps.reshape(s, r, cg, kb)
            tp[...] = 0.0
            for bb in range(s):
                for a in range(r):
                    for kk in range(nk):
                        src = w[g * kg + b * kb + kk]
                        for c in range(cg):
                            tp[bb, a, c, kk] = src[c, a, bb]
            np.dot(rows, taps, row.reshape(hh2, r * n))
            for v in range(hh):
                np.dot(cols, row[v], res)
                for u in range(t2):
                    _spectra_planes(out[g, u * hh + v, b], res[u], res[t2 + u], gauss)


@njit(cache=True, inline="always")
def _spectra_planes(dst, re, im, gauss):
    """One frequency's planes of a block of filter spectra (see `_filter_spectra`) from its
    real and imaginary parts."""
    n = len(re)
    if gauss:
        for i in range(n):
            dst[i] = re[i]
            dst[n + i] = re[i] + im[i]
            dst[2 * n + i] = im[i] - re[i]
    else:
        for i in range(n):
            dst[i] = re[i]
            dst[n + i] = im[i]


def workspace(spec, params=None):
    """Bytes `prepare` and one call allocate: the filter spectra, a contiguous copy of the
    taps (where they come as a view) and each thread's scratch in `_spectra`, the input and
    output spectra, and each thread's transform scratch."""
    geo = _geometry(spec, params)
    taps = spec.itemsize * spec.k * spec.cg * spec.r * spec.s
    t = geo["t"]
    h = t // 2 + 1
    n = spec.cg * geo["tile"][0]
    spectra = (8 * numba.config.NUMBA_NUM_THREADS * n * (spec.s * spec.r + 2 * h * spec.r + 2 * t)
               + 64 * (h * spec.s + 8 * t * spec.r))  # and the angles
    return (taps + spectra
            + sum(math.prod(sh) * spec.itemsize + 128 for sh in geo["shapes"].values()))


def _streams(spectra, vl) -> bool:
    """Whether the forward transform (``xs``) or the multiply (``ys``) writes its spectra with
    non-temporal stores: when they outgrow the threads' L2 caches (they go to memory anyway,
    and skipping the read for ownership of lines written one per frequency made VGG-A
    conv3.2's forward transform 1.9x faster), and only where every run of tiles starts on a
    vector (`combine_lanes`, `copy_lanes`)."""
    aligned = spectra.ctypes.data % (vl * spectra.itemsize) == 0 and TILE_BLOCK % vl == 0
    caches = numba.config.NUMBA_NUM_THREADS * (current().l2_bytes or 1 << 20)
    return bool(aligned and spectra.nbytes > caches)


def prepare(w, spec, params=None):
    """Choose the tile, transform the filters once and allocate the spectra.

    Returns ``compute(x, out)`` with phases ``input transform``, ``multiply`` and ``output
    transform``; ``compute.plan`` names the tile and the tiling, ``compute.params`` the
    parameters that ran.
    """
    geo = _geometry(spec, params)
    dtype = np.dtype(spec.dtype)
    t, mh, mw, tb, lc, lk = (geo[k] for k in ("t", "mh", "mw", "tb", "lc", "lk"))
    rows, tw, order, irows = _dft(t, mw, dtype)
    kb, nv, vl = geo["tile"]
    tokens = (token(kb), token(nv), token(vl))
    # one pooled block: a layer prepared per call reuses the last call's pages
    wp, xs, ys, scratch = carve(dtype, *geo["shapes"].values())
    _filter_spectra(w, spec, t, wp, kb, geo["gauss"])
    xs[..., geo["nt"]:] = 0  # padding columns: the forward transform writes the rest
    kgp = wp.shape[2] * kb  # channels the multiply writes; the inverse reads whole blocks
    if kgp // lk < -(-spec.kg // lk):
        ys[:, :, kgp // lk, :, :, kgp % lk:] = 0
    pt, pl = spec.pads[0], spec.pads[2]
    nt, nth, ntw = geo["nt"], geo["nth"], geo["ntw"]
    stream_x, stream_y = _streams(xs, vl), _streams(ys, vl)
    form = token(wp.shape[3])  # P: the multiply's form, a compile-time constant

    def input_transform(x, out):
        with single_threaded_blas():
            _forward(x, pt, pl, mh, mw, nth, ntw, tb, lc, rows, tw, order, scratch, xs, stream_x,
                     tokens[2])

    def multiply(x, out):
        _multiply(wp, xs, ys, t // 2 + 1, stream_y, form, *tokens)

    def output_transform(x, out):
        with single_threaded_blas():
            _inverse(ys, nt, mh, nth, ntw, tw[1], order, irows, scratch, out)

    compute = with_phases(("input transform", input_transform), ("multiply", multiply),
                          ("output transform", output_transform))
    compute.plan = dict(tile=t, outputs=(mh, mw), tiles=(nth, ntw), job=(tb, lc, lk),
                        register_tile=(kb, nv * vl), form="gauss" if geo["gauss"] else "complex")
    compute.params = geo["params"]
    return compute
