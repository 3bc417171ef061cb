"""FFT convolution: real 2-D FFTs of input tiles, a complex channel GEMM per frequency, inverse.

Algorithm (Mathieu, Henaff & LeCun, "Fast training of convolutional networks through FFTs",
ICLR 2014; tiled overlap-save as in Vasilache et al., "Fast convolutional nets with fbfft",
ICLR 2015).  Cross-correlation is a product with the conjugate filter spectrum:
``z[t] = sum_v x[t + v] w[v]``  <=>  ``Z[f] = X[f] conj(W[f])`` (circularly, length P).

Every problem is supported:

* stride: polyphase decomposition.  ``out[i] = sum_phi sum_v x_phi[i + v] w_phi[v]`` with
  ``x_phi[m] = xp[m*s + phi]`` and ``w_phi[v] = wd[v*s + phi]``: a stride-s correlation is a
  stride-1 correlation over ``s_h*s_w`` times as many channels with a filter ``s`` times
  shorter, so no output is computed and thrown away.  Phases whose filter is all zero (dilation
  a multiple of the stride) are dropped.
* dilation: the filter is spread (``dh - 1`` zeros between taps) before its transform.
* padding: never materialised.  A gather map (prepare) places each needed input pixel at its
  circular position in the tile buffer and writes zeros elsewhere.  Padding that a tile only
  needs as zeros may wrap around the circular buffer, which lets a single-tile transform be
  ``max(h + pt, h + pb)`` long instead of ``h + pt + pb``.
* groups: one channel GEMM per group.
* any filter size, including filters longer than the transform (their taps alias mod P,
  which is exact as long as every input pixel a tile reads sits at a distinct position).

Layout (``nt`` = image x tile, ``cc`` = channel x phase, ``F = P * (Q // 2 + 1)``):
``xt (nt*cc, P, Q)`` real tiles -> ``Xf (nt*cc, P, Q//2+1)`` complex (rocket-fft ``r2c``) ->
``Xs (nt, F, groups, 2, ccg)`` split re/im, channels innermost -> per frequency and group the
complex GEMM ``Y[t, k] = sum_c X[t, c] W[k, c]`` with ``Ws (groups, F, kg, 2, ccg)``
(channels innermost: each output is a dot product over channels that LLVM vectorises) ->
``Yf (nt*k, P, Q//2+1)`` complex -> ``yt`` real (``c2r``) -> crop into ``out``.

The tile size comes from a cost model (prepare): a single tile wins for large filters,
smaller tiles (reusing each filter spectrum across tiles) for large images and small filters.
The filter spectra (prepare) are direct DFTs of the taps, separable (rows, then columns), in
float64 with correctly rounded twiddles, written straight into the ``Ws`` layout.

Error (max|out - ref| / max|ref| against the float64 oracle, normal random data): float32
spectra are complex64 (filter spectra computed in float64, rounded once: the correctly
rounded values in all but ~1 per million elements) and give 2-3e-7 for
every filter size measured, 3x3 to 31x31 and transforms up to 160 x 160 (3-5e-7 on uniform
[0, 1) data, where oneDNN's float32 direct sums reach 0.5-2.4e-6 for 7x7..15x15).  Outputs
that are exactly zero (every tap in the padding) come out as roundoff, ~1e-7 of the data
scale.  float64 runs in complex128: ~1e-15.
"""

import functools
import math

import numba
import numpy as np
import rocket_fft  # low-level r2c/c2r (write into given arrays, explicit scale, nthreads)
from numba import njit, prange

from convbench_kernels.contract import every_problem, with_phases
from convbench_kernels.cpu.target import Target, current, resolve

# Cost model constants (fp32; seconds, bytes/s, flop/s), fitted on the machine described in
# docs/kernel-measurements.md.  The model only ranks tilings: scaling every time by one
# factor changes no choice, so what matters is how the constants compare.  One r2c or c2r
# of a P x Q plane (batched, single thread) costs a + b * PQ log2 PQ: a fixed cost per
# plane, which dominates small planes, plus the FFT's work.  The model ranked the
# measured-fastest tiling first on 32->32 64x64 9x9/15x15, ResNet conv1, 3x3 @56 and @14
# (all tilings timed).
_FFT_A = 0.07e-6
_FFT_B = 0.08e-9
# Channel GEMM: one tile is bound by streaming the filter spectra (from L3 while they fit in
# _L3 bytes, from DRAM at half that rate beyond); several tiles reuse each spectrum and are
# bound by arithmetic, at nearly twice one tile's flop rate (8 flops per complex MAC).
_BW_L3 = 90e9
_BW_DRAM = 45e9
_RATE_ONE = 100e9
_RATE_MANY = 180e9
# Gather, transposes and crop: bound by the bytes they move, at a fraction of the streaming
# rate (their accesses are indexed or strided).
_BW_PASS = 20e9
# Tilings whose filter spectra exceed this many bytes are taken only if nothing smaller exists.
_MAX_WS_BYTES = 256 << 20


supports = every_problem  # any filter, stride, padding, dilation, groups, batch


def defaults(target: Target) -> dict:
    """The cost model's machine-dependent terms: ``l3_bytes`` (the filter spectra stream from
    L3 while they fit in it: the target's L3, 24 MB where the OS does not say), and
    ``plane_cost`` and ``pass_cost``, factors on the fixed cost of one plane's transform and
    on the gather and crop passes, against the FFT's and GEMM's work (1: the fitted model).
    Larger factors favour fewer, larger tiles."""
    return {"l3_bytes": target.l3_bytes or 24_000_000, "plane_cost": 1.0, "pass_cost": 1.0}


def space(target: Target) -> list[dict]:
    """The model's two ratios halved and doubled (plans change, nothing new compiles)."""
    d = defaults(target)
    return [{**d, "plane_cost": a, "pass_cost": b} for a in (0.5, 1.0, 2.0)
            for b in (0.5, 1.0, 2.0)]


def _params(given=None) -> dict:
    return resolve("fft", defaults(current()), given)


# ----------------------------------------------------------------------------- geometry
def _good_size(n):
    return int(rocket_fft.good_size(max(int(n), 1), True))


def _axis_phases(r, s, d):
    """Active polyphase components of one axis.

    Returns
    -------
    phases : list of int
        The phases ``phi`` in ``[0, s)`` that hold at least one filter tap.
    rf : int
        Length of each phase filter, ``ceil(rd / s)`` with ``rd = d * (r - 1) + 1``.
    """
    rd = d * (r - 1) + 1
    phases = sorted({(u * d) % s for u in range(r)})
    return phases, -(-rd // s)


def _axis_map(size, pad, s, phases, rf, o, th, p, build=True):
    """Gather map of one axis, or None when the tiling (th, p) would alias.

    Tile ``a`` computes outputs ``[a*th, a*th + th)`` and needs ``x_phi[m]`` for
    ``m`` in ``[A, B] = [a*th, a*th + th + rf - 2]``; ``x_phi[m]`` is the input row
    ``m*s + phi - pad``.  Needed rows are stored at circular position ``(m - A) mod p``;
    padding rows are zeros, stored nowhere.  That is exact when no needed zero shares a
    position with a stored row: ``p > U - A`` and ``p > B - L`` for the stored range
    ``[L, U]``, and the ``th`` outputs need ``p >= th`` distinct positions.

    Returns
    -------
    numpy.ndarray (tiles, len(phases), p) int64 or None
        Input row at each position, -1 for zero.  With ``build=False`` only the check runs
        and True stands for the map (the planner checks tens of tilings and keeps one).
    """
    if p < th:
        return None
    tiles = -(-o // th)
    if not build:
        rows = True
    else:
        rows = np.full((tiles, len(phases), p), -1, dtype=np.int64)
    for a in range(tiles):
        lo, hi = a * th, a * th + th + rf - 2
        for j, phi in enumerate(phases):
            s0 = -(-(pad - phi) // s)  # first m with m*s + phi - pad >= 0
            s1 = (size - 1 + pad - phi) // s  # last m with m*s + phi - pad <= size - 1
            first, last = max(lo, s0), min(hi, s1)
            if first > last:
                continue
            if p <= max(last - lo, hi - first):
                return None
            if build:
                m = np.arange(first, last + 1)
                rows[a, j, (m - lo) % p] = m * s + phi - pad
    return rows


def _axis_candidates(size, pad, s, phases, rf, o):
    """Tilings (th, p) of one axis: one tile, and overlap-save tiles of every fast p."""
    cands = {}
    # one tile: shrink p as far as the wrap-around rule allows
    p = _good_size(max(o, 1))
    while _axis_map(size, pad, s, phases, rf, o, o, p, build=False) is None:
        p = _good_size(p + 1)
    cands[p] = (o, p)
    p_one = p
    q = _good_size(max(rf, 2))
    while q < p_one:
        th = min(o, q - rf + 1)
        if th >= 1 and q not in cands:
            if _axis_map(size, pad, s, phases, rf, o, th, q, build=False) is not None:
                cands[q] = (th, q)
        q = _good_size(q + 1)
    return list(cands.values())


def _cost(k, kg, groups, nt, cc, p, q, itemsize, threads, model):
    """Modelled seconds of one call (see the constants above); ``model`` is ``(l3_bytes,
    plane_cost, pass_cost)`` (`defaults`)."""
    l3, plane_cost, pass_cost = model
    f = p * (q // 2 + 1)
    planes = nt * (cc + k)
    fft = planes * (plane_cost * _FFT_A + _FFT_B * p * q * math.log2(max(p * q, 2))) / threads
    ws_bytes = 2 * itemsize * f * kg * (cc // groups) * groups
    flops = 8.0 * nt * f * kg * (cc // groups) * groups
    bw = _BW_L3 if ws_bytes < l3 else _BW_DRAM
    rate = (_RATE_ONE if nt == 1 else _RATE_MANY) * 4 / itemsize
    gemm = max(ws_bytes / bw, flops / rate)
    passes = pass_cost * planes * p * q * 3 * itemsize / _BW_PASS
    return fft + gemm + passes, ws_bytes


def _plan(spec, params=None):
    """Choose the tiling of both axes with the cost model.

    Plans are cached per problem shape and thread count (``convbench.conv2d`` prepares on
    every call, and planning checks tens of tilings in Python).  The maps in the returned
    dict are shared: read only.
    """
    p = _params(params)
    model = (p["l3_bytes"], p["plane_cost"], p["pass_cost"])
    return dict(_plan_cached(spec.n, spec.c, spec.h, spec.w, spec.k, spec.r, spec.s, spec.sh,
                             spec.sw, spec.dh, spec.dw, tuple(spec.pads), spec.groups, spec.oh,
                             spec.ow, np.dtype(spec.dtype).itemsize,
                             max(numba.get_num_threads(), 1), model), params=p)


@functools.lru_cache(maxsize=256)
def _plan_cached(n, c, h, w, k, r, s, sh, sw, dh, dw, pads, groups, oh, ow, itemsize, threads,
                 model):
    pt, pb, pl, pr = pads
    ph_h, rf_h = _axis_phases(r, sh, dh)
    ph_w, rf_w = _axis_phases(s, sw, dw)
    cands_h = _axis_candidates(h, pt, sh, ph_h, rf_h, oh)
    cands_w = _axis_candidates(w, pl, sw, ph_w, rf_w, ow)
    cc = c * len(ph_h) * len(ph_w)
    best = None
    for th, p in cands_h:
        for tw, q in cands_w:
            nt = n * -(-oh // th) * -(-ow // tw)
            cost, ws_bytes = _cost(k, k // groups, groups, nt, cc, p, q, itemsize, threads,
                                   model)
            key = (ws_bytes > _MAX_WS_BYTES, cost)
            if best is None or key < best[0]:
                best = (key, (th, p), (tw, q))
    _, (th, p), (tw, q) = best
    rows = _axis_map(h, pt, sh, ph_h, rf_h, oh, th, p)
    cols = _axis_map(w, pl, sw, ph_w, rf_w, ow, tw, q)
    return dict(ph_h=ph_h, rf_h=rf_h, ph_w=ph_w, rf_w=rf_w, th=th, p=p, rows=rows,
                tw=tw, q=q, cols=cols)


# ----------------------------------------------------------------------------- filter spectra
# The spectra are direct DFTs of the few taps, not FFTs of zero-padded planes: a row pass
# (width transform of each of the <= r tap rows) then a column pass, both float64 loops over
# the channels that LLVM vectorises, written straight into the GEMM layout.  The whole
# prepare step (float32) runs 14-40x faster this way than with numpy's rfft2 of padded
# planes (15x15 32->32 @64, 3x3 64->64 @56, 3x3 512->512 @7; the last spends about half its
# time writing its 40 MB of spectra).  FFTs lose here: rocket-fft's float64 r2c of the 1024
# planes of 72 x 72 of 15x15 32->32 @64 alone takes twice this whole step on one thread, and
# tiny planes pay the fixed per-plane cost each (262144 planes of 4 x 8 at 512 @7).
_PI = np.longdouble("3.14159265358979323846264338327950288")
# Bytes of row transforms a thread keeps (L2-sized): a few filters share each column pass,
# so that its writes to the spectra cover several output channels at once.
_Z_BYTES = 1 << 19


def _taps(r, d, s, phases, p):
    """Where the taps of one axis go: phase index, and position among the distinct positions.

    Tap ``u`` sits at ``u*d = v*s + phi`` (phase ``phi``, phase-filter tap ``v``) and at
    circular position ``v mod p`` (a single tile may be shorter than the filter: taps alias).

    Returns
    -------
    ph, at : numpy.ndarray (r,) int64
        Phase index and index into ``pos`` of every tap.
    pos : numpy.ndarray int64
        The distinct positions, increasing.
    """
    where = [((u * d) // s) % p for u in range(r)]
    pos = sorted(set(where))
    ph = [phases.index((u * d) % s) for u in range(r)]
    return (np.array(ph, dtype=np.int64), np.array([pos.index(x) for x in where], dtype=np.int64),
            np.array(pos, dtype=np.int64))


@functools.lru_cache(maxsize=64)
def _circle(n):
    """(2, n) cos and sin of ``2 pi m / n``, computed in long double and rounded once to
    float64, exact at quarter turns (so that the imaginary parts that vanish are zeros)."""
    m = np.arange(n)
    angle = (2 * _PI / n) * m.astype(np.longdouble)
    e = np.stack([np.cos(angle), np.sin(angle)]).astype(np.float64)
    quarter = (4 * m) % n == 0
    e[:, quarter] = np.round(e[:, quarter])
    e.flags.writeable = False
    return e


def _twiddles(pos, n, nf):
    """(2, nf, len(pos)) cos and sin of ``2 pi f pos / n`` for the frequencies f < nf.

    C-contiguous whatever the shape: NumPy lays some fancy-indexed results out in F or neither
    order, and each layout was one more compilation of `_spectra` (10 instead of 2 on a cold
    cache).
    """
    return np.ascontiguousarray(_circle(n)[:, (np.arange(nf)[:, None] * pos[None, :]) % n])


@njit(cache=True, fastmath={"contract"})
def _dft_rows(x, e, f, a, b):
    """``a = sum_i e[0, f, i] x[i]`` and ``b = sum_i e[1, f, i] x[i]`` over the rows of x (m, n).

    Four rows a pass (missing rows repeat the last one with a zero coefficient): one row a
    pass moved a and b through the cache m times and the column pass ran 2x slower.
    ``contract`` lets LLVM fuse the multiply-adds (FMA: one rounding fewer).
    """
    m, n = x.shape
    for i in range(0, m, 4):
        i1, i2, i3 = min(i + 1, m - 1), min(i + 2, m - 1), min(i + 3, m - 1)
        c0, c1, c2, c3 = e[0, f, i], e[0, f, i1], e[0, f, i2], e[0, f, i3]
        s0, s1, s2, s3 = e[1, f, i], e[1, f, i1], e[1, f, i2], e[1, f, i3]
        if i + 3 >= m:
            c3 = s3 = 0.0
            if i + 2 >= m:
                c2 = s2 = 0.0
                if i + 1 >= m:
                    c1 = s1 = 0.0
        x0, x1, x2, x3 = x[i], x[i1], x[i2], x[i3]
        if i == 0:
            for j in range(n):
                a[j] = c0 * x0[j] + c1 * x1[j] + c2 * x2[j] + c3 * x3[j]
                b[j] = s0 * x0[j] + s1 * x1[j] + s2 * x2[j] + s3 * x3[j]
        else:
            for j in range(n):
                a[j] += c0 * x0[j] + c1 * x1[j] + c2 * x2[j] + c3 * x3[j]
                b[j] += s0 * x0[j] + s1 * x1[j] + s2 * x2[j] + s3 * x3[j]


@njit(cache=True)
def _fold(wk, ph_u, at_u, ph_v, at_v, nph_w, gb):
    """Taps of wk (channels, r, s) into gb (rows, cols, channels * phases), float64, summed
    where they alias (in the order u, v)."""
    nci, r, s = wk.shape
    nph = gb.shape[2] // nci
    gb[:] = 0
    for u in range(r):
        for v in range(s):
            row = gb[at_u[u], at_v[v]]
            ph = ph_u[u] * nph_w + ph_v[v]
            for ci in range(nci):
                row[ci * nph + ph] += wk[ci, u, v]


@njit(cache=True)
def _store(ab, fi, fm, scale, out, g, kl, c0):
    """Rows ``fi`` and ``fm = P - fi`` of one filter's spectra into ``out[g, f, kl, :, c0:]``.

    ab (2, Q//2+1, 2, npl): ``A = sum_i cos z[i]`` and ``B = sum_i sin z[i]`` over the tap
    rows (each ``z`` complex, split re/im); the conjugate spectrum is ``A + iB`` at fi and
    ``A - iB`` at P - fi.  Rounded once to out's dtype.  1-D row views keep the channel loops
    unit-stride (a strided 3-D view left them scalar: 3x slower).
    """
    qh, npl = ab.shape[1], ab.shape[3]
    for j in range(qh):
        ar, ai, br, bi = ab[0, j, 0], ab[0, j, 1], ab[1, j, 0], ab[1, j, 1]
        o0 = out[g, fi * qh + j, kl, 0, c0:c0 + npl]
        o1 = out[g, fi * qh + j, kl, 1, c0:c0 + npl]
        for c in range(npl):
            o0[c] = (ar[c] - bi[c]) * scale
            o1[c] = (ai[c] + br[c]) * scale
        if fm != fi:
            o0 = out[g, fm * qh + j, kl, 0, c0:c0 + npl]
            o1 = out[g, fm * qh + j, kl, 1, c0:c0 + npl]
            for c in range(npl):
                o0[c] = (ar[c] + bi[c]) * scale
                o1[c] = (ai[c] - br[c]) * scale


@njit(parallel=True, cache=True)
def _spectra(w, ph_u, at_u, ph_v, at_v, nph_w, eh, ew, kb, cb, scale, out, nthreads):
    """Conjugate spectra of every phase filter, scaled by ``scale``, into out.

    w (k, cg, r, s); eh (2, P, rows) and ew (2, Q//2+1, cols) twiddles of the tap positions;
    out (groups, F, kg, 2, cg * nph).  Each thread takes blocks of ``kb`` filters x ``cb``
    channels: the row pass of each filter, ``z[i, j] = sum_t ew[:, j, t] g[i, t]`` into its
    own float64 buffers, then per frequency row ``fi <= P/2`` the column pass and the store of
    rows fi and P - fi (real input: both come from the same two sums).
    """
    k, cg = w.shape[0], w.shape[1]
    kg, ccg = out.shape[2], out.shape[4]
    p, nr = eh.shape[1], eh.shape[2]
    qh, nc = ew.shape[1], ew.shape[2]
    nph = ccg // cg
    nb = -(-cg // cb)
    items = -(-k // kb) * nb
    nch = min(nthreads, items)
    for ch in prange(nch):
        gbuf = np.empty(nr * nc * cb * nph)
        zbuf = np.empty(kb * nr * qh * 2 * cb * nph)
        abuf = np.empty(2 * qh * 2 * cb * nph)
        for item in range(ch * items // nch, (ch + 1) * items // nch):
            k0 = item // nb * kb
            k1 = min(k, k0 + kb)
            c0 = item % nb * cb
            c1 = min(cg, c0 + cb)
            npl = (c1 - c0) * nph
            ln = qh * 2 * npl
            gb = gbuf[:nr * nc * npl].reshape(nr, nc, npl)
            zs = zbuf[:(k1 - k0) * nr * ln].reshape(k1 - k0, nr, qh, 2, npl)
            ab = abuf[:2 * ln].reshape(2, qh, 2, npl)
            for kk in range(k0, k1):
                _fold(w[kk, c0:c1], ph_u, at_u, ph_v, at_v, nph_w, gb)
                z = zs[kk - k0]
                for i in range(nr):
                    for j in range(qh):
                        _dft_rows(gb[i], ew, j, z[i, j, 0], z[i, j, 1])
            abf = ab.reshape(2, ln)
            for fi in range(p // 2 + 1):
                for kk in range(k0, k1):
                    _dft_rows(zs[kk - k0].reshape(nr, ln), eh, fi, abf[0], abf[1])
                    _store(ab, fi, (p - fi) % p, scale, out, kk // kg, kk % kg, c0 * nph)


def _spectra_geometry(spec, plan):
    """Taps, twiddles and blocking of `_spectra` for this plan (shared with `workspace`)."""
    p, q = plan["p"], plan["q"]
    qh = q // 2 + 1
    nph = len(plan["ph_h"]) * len(plan["ph_w"])
    ph_u, at_u, rows = _taps(spec.r, spec.dh, spec.sh, plan["ph_h"], p)
    ph_v, at_v, cols = _taps(spec.s, spec.dw, spec.sw, plan["ph_w"], q)
    threads = max(numba.get_num_threads(), 1)
    zk = 8 * len(rows) * qh * 2 * spec.cg * nph  # one filter's row transforms
    nb = -(-zk // _Z_BYTES)  # channel blocks, only for very wide filters
    cb = -(-spec.cg // nb)
    per_thread = -(-spec.k // threads)
    kb = -(-per_thread // -(-per_thread // max(1, _Z_BYTES // (zk // nb))))
    return dict(ph_u=ph_u, at_u=at_u, rows=rows, ph_v=ph_v, at_v=at_v, cols=cols, kb=kb, cb=cb,
                threads=threads, nph=nph, qh=qh)


def _filter_spectra(w, spec, plan):
    """Conjugate, scaled spectra of the phase filters, (groups, F, kg, 2, ccg), spec.dtype.

    Computed in float64 with correctly rounded twiddles and rounded once; ``1 / (P Q)`` of
    the inverse transform is folded in.  Against long-double spectra, float32 results are the
    correctly rounded values in all but 3 of 2.6M elements over 37 problems (numpy's FFT,
    used before: 1253, mostly roundoff ~1e-17 where the exact value is 0); float64 error
    ~2-5e-16 of the largest value, like the FFT's.
    """
    geo = _spectra_geometry(spec, plan)
    p, q = plan["p"], plan["q"]
    out = np.empty((spec.groups, p * geo["qh"], spec.kg, 2, spec.cg * geo["nph"]),
                   dtype=spec.dtype)
    eh = _twiddles(geo["rows"], p, p)
    ew = _twiddles(geo["cols"], q, geo["qh"])
    _spectra(w, geo["ph_u"], geo["at_u"], geo["ph_v"], geo["at_v"], len(plan["ph_w"]), eh, ew,
             geo["kb"], geo["cb"], 1.0 / (p * q), out, geo["threads"])
    return out


# ----------------------------------------------------------------------------- kernels
@njit(parallel=True, cache=True)
def _forward(x, rows, cols, nph_w, xt, xf, nthreads):
    """Gather the tiles of every (image, tile, channel, phase) plane and transform them.

    x (n, c, h, w); rows (mh, nph_h, P), cols (mw, nph_w, Q) input index or -1;
    xt (nt*cc, P, Q) real workspace; xf (nt*cc, P, Q//2+1) complex result.  ``nthreads``
    comes from the caller: numba.get_num_threads() inside njit defeats caching.
    """
    c = x.shape[1]
    mh, nph_h, p = rows.shape
    mw, _, q = cols.shape
    cc = c * nph_h * nph_w
    planes = xt.shape[0]
    nch = min(nthreads, planes)
    axes = np.array([1, 2])
    for ch in prange(nch):
        lo = ch * planes // nch
        hi = (ch + 1) * planes // nch
        for pl in range(lo, hi):
            t, ci = pl // cc, pl % cc
            b, a, bw = t // (mh * mw), (t // mw) % mh, t % mw
            chan, ph = ci // (nph_h * nph_w), ci % (nph_h * nph_w)
            i_ph, j_ph = ph // nph_w, ph % nph_w
            for i in range(p):
                row = rows[a, i_ph, i]
                if row < 0:
                    xt[pl, i, :] = 0
                else:
                    for j in range(q):
                        col = cols[bw, j_ph, j]
                        xt[pl, i, j] = x[b, chan, row, col] if col >= 0 else 0
        # One batched single-threaded call per numba thread: ducc's per-call overhead is
        # paid once a thread, not once a plane, and its own workers (nthreads=2 on the whole
        # batch) measured about 5 % slower and would add a second thread pool.
        rocket_fft.r2c(xt[lo:hi], xf[lo:hi], axes, True, 1.0, 1)


@njit(parallel=True, cache=True)
def _to_split(xf, xs, ccg):
    """(nt*cc, P, Q//2+1) complex spectra -> (nt, F, groups, 2, ccgp) split, channels innermost.

    A pass of its own: transposing inside _forward, right after each thread's r2c, measured
    1.7x slower (32 channels of 72 x 72).  ``ccgp >= ccg`` pads the channel axis (see
    prepare).
    """
    nt, f, g_n = xs.shape[0], xs.shape[1], xs.shape[2]
    cc = g_n * ccg
    xf2 = xf.reshape(xf.shape[0], f)  # (nt*cc, F)
    fb = 64
    nfb = -(-f // fb)
    for job in prange(nt * nfb):
        t, f0 = job // nfb, (job % nfb) * fb
        f1 = min(f0 + fb, f)
        for g in range(g_n):
            for c in range(ccg):
                for i in range(f0, f1):
                    v = xf2[t * cc + g * ccg + c, i]
                    xs[t, i, g, 0, c] = v.real
                    xs[t, i, g, 1, c] = v.imag


@njit(fastmath=True, cache=True, inline="always")
def _cmac(ar, ai, wr, wi, xs, t, fi, g, c):
    """``(ar, ai) + (wr + i wi) * xs[t, fi, g, :, c]``."""
    xr = xs[t, fi, g, 0, c]
    xi = xs[t, fi, g, 1, c]
    return ar + (wr * xr - wi * xi), ai + (wr * xi + wi * xr)


@njit(fastmath=True, cache=True, inline="always")
def _block(xs, ws, yv, g, fi, k, kk, t, tiles, chans, zero):
    """Outputs of ``tiles`` tiles (t, t+1) x ``chans`` output channels (k, k+1): each load
    of a spectrum serves the whole block.  ``tiles`` and ``chans`` are 1 or 2, constants at
    every call, so that after inlining the branches fold away."""
    ccg = ws.shape[4]
    a0r = a0i = a1r = a1i = b0r = b0i = b1r = b1i = zero
    for c in range(ccg):
        wr, wi = ws[g, fi, k, 0, c], ws[g, fi, k, 1, c]
        a0r, a0i = _cmac(a0r, a0i, wr, wi, xs, t, fi, g, c)
        if tiles == 2:
            a1r, a1i = _cmac(a1r, a1i, wr, wi, xs, t + 1, fi, g, c)
        if chans == 2:
            wr, wi = ws[g, fi, k + 1, 0, c], ws[g, fi, k + 1, 1, c]
            b0r, b0i = _cmac(b0r, b0i, wr, wi, xs, t, fi, g, c)
            if tiles == 2:
                b1r, b1i = _cmac(b1r, b1i, wr, wi, xs, t + 1, fi, g, c)
    yv[t, kk, fi, 0], yv[t, kk, fi, 1] = a0r, a0i
    if tiles == 2:
        yv[t + 1, kk, fi, 0], yv[t + 1, kk, fi, 1] = a1r, a1i
    if chans == 2:
        yv[t, kk + 1, fi, 0], yv[t, kk + 1, fi, 1] = b0r, b0i
        if tiles == 2:
            yv[t + 1, kk + 1, fi, 0], yv[t + 1, kk + 1, fi, 1] = b1r, b1i


@njit(parallel=True, fastmath=True, cache=True)
def _channel_gemm(xs, ws, yv, zero):
    """Per frequency and group, ``Y[t, k] = sum_c X[t, c] W[k, c]`` (complex).

    xs (nt, F, groups, 2, ccgp >= ccg); ws (groups, F, kg, 2, ccg); yv (nt, k, F, 2) output.
    Every inner index is a bare loop counter: with an offset ``c0 + c`` numba tests the
    index for wrap-around per element and the loop ran 3-6x slower.  Blocks of 2 tiles x 2
    output channels (`_block`) share each load (twice the GFLOP/s of unblocked loops with
    several tiles); one tile uses 1 x 1 blocks, which stream the filter spectra fastest.
    fastmath lets LLVM vectorise the sums over channels; vectorising over output channels
    instead (accumulators in memory, no horizontal sums) measured 2-4x slower.
    """
    nt, f = xs.shape[0], xs.shape[1]
    g_n, _, kg, _, _ = ws.shape
    t2 = nt - nt % 2
    k2 = kg - kg % 2 if nt > 1 else 0
    for job in prange(g_n * f):
        g, fi = job // f, job % f
        for k in range(0, k2, 2):
            for t in range(0, t2, 2):
                _block(xs, ws, yv, g, fi, k, g * kg + k, t, 2, 2, zero)
            for t in range(t2, nt):
                _block(xs, ws, yv, g, fi, k, g * kg + k, t, 1, 2, zero)
        for k in range(k2, kg):
            for t in range(nt):
                _block(xs, ws, yv, g, fi, k, g * kg + k, t, 1, 1, zero)


@njit(parallel=True, cache=True)
def _inverse(yf, yt, th, tw, mh, mw, out, nthreads):
    """Inverse-transform every (image, tile, output channel) plane and crop it into ``out``.

    yf (nt*k, P, Q//2+1) complex; yt (nt*k, P, Q) real workspace; out (n, k, oh, ow).
    Output ``t`` of a tile sits at circular position ``t`` (see _axis_map).
    """
    k, oh, ow = out.shape[1], out.shape[2], out.shape[3]
    planes = yt.shape[0]
    nch = min(nthreads, planes)
    axes = np.array([1, 2])
    for ch in prange(nch):
        lo = ch * planes // nch
        hi = (ch + 1) * planes // nch
        rocket_fft.c2r(yf[lo:hi], yt[lo:hi], axes, False, 1.0, 1)
        for pl in range(lo, hi):
            t, kk = pl // k, pl % k
            b, a, bw = t // (mh * mw), (t // mw) % mh, t % mw
            i0, j0 = a * th, bw * tw
            ni, nj = min(th, oh - i0), min(tw, ow - j0)
            for i in range(ni):
                out[b, kk, i0 + i, j0:j0 + nj] = yt[pl, i, :nj]


# ----------------------------------------------------------------------------- entry point
def workspace(spec, params=None):
    """Bytes `prepare` and one call allocate, from the plan: the filter spectra, each thread's
    float64 buffers that build them (near `_Z_BYTES`), and the transform buffers."""
    plan = _plan(spec, params)
    p, q = plan["p"], plan["q"]
    nph = len(plan["ph_h"]) * len(plan["ph_w"])
    cc = spec.c * nph
    nt = spec.n * plan["rows"].shape[0] * plan["cols"].shape[0]
    f = p * (q // 2 + 1)
    b = np.dtype(spec.dtype).itemsize
    spectra = b * 2 * f * spec.k * spec.cg * nph
    geo = _spectra_geometry(spec, plan)
    bw = geo["cb"] * nph
    per_thread = len(geo["rows"]) * bw * (len(geo["cols"]) + geo["kb"] * 2 * geo["qh"])
    temporaries = 8 * geo["threads"] * (per_thread + 4 * geo["qh"] * bw) + 4096
    planes = b * nt * (cc + spec.k) * (p * q + 2 * f) + b * nt * f * 2 * (cc + 8 * spec.groups)
    return spectra + temporaries + planes


def prepare(w, spec, params=None):
    """Plan the tiling, transform the filter once and allocate every workspace.

    Parameters
    ----------
    w : numpy.ndarray (k, c // groups, r, s), spec.dtype
    spec : ConvSpec-like
    params : dict, optional
        The cost model's machine terms (`defaults`); default: the installed or
        target-derived ones.

    Returns
    -------
    compute : callable
        ``compute(x, out)`` writes the cross-correlation of ``x`` (n, c, h, w) into ``out``
        (n, k, oh, ow).  ``compute.plan`` records the chosen transform size and tiling,
        ``compute.params`` the model's terms.
    """
    dtype = np.dtype(spec.dtype)
    cdtype = np.complex64 if dtype == np.float32 else np.complex128
    plan = _plan(spec, params)
    p, q, th, tw = plan["p"], plan["q"], plan["th"], plan["tw"]
    rows, cols = plan["rows"], plan["cols"]
    mh, mw = rows.shape[0], cols.shape[0]
    nph_w = len(plan["ph_w"])
    cc = spec.c * len(plan["ph_h"]) * nph_w
    nt = spec.n * mh * mw
    qh = q // 2 + 1
    f = p * qh
    ws = _filter_spectra(w, spec, plan)
    xt = np.empty((nt * cc, p, q), dtype=dtype)
    xf = np.empty((nt * cc, p, qh), dtype=cdtype)
    ccg = cc // spec.groups
    # _to_split writes one float per row of 2*ccgp; rows 4 KB apart (512 channels) all fall
    # in one L1 set and the pass ran 6x slower: pad 16k channels by 8 to spread the rows.
    ccgp = ccg + 8 if ccg >= 64 and ccg % 16 == 0 else ccg
    xs = np.empty((nt, f, spec.groups, 2, ccgp), dtype=dtype)
    yf = np.empty((nt * spec.k, p, qh), dtype=cdtype)
    yv = yf.view(dtype).reshape(nt, spec.k, f, 2)  # (nt, k, F, re/im)
    yt = np.empty((nt * spec.k, p, q), dtype=dtype)
    zero = dtype.type(0)

    def input_transform(x, out):
        _forward(x, rows, cols, nph_w, xt, xf, numba.get_num_threads())
        _to_split(xf, xs, ccg)

    def multiply(x, out):
        _channel_gemm(xs, ws, yv, zero)

    def output_transform(x, out):
        _inverse(yf, yt, th, tw, mh, mw, out, numba.get_num_threads())

    compute = with_phases(("input transform", input_transform), ("multiply", multiply),
                          ("output transform", output_transform))
    compute.plan = dict(p=p, q=q, th=th, tw=tw, tiles=(mh, mw), channels=cc)
    compute.params = plan["params"]
    return compute
