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

Error (max|out - ref| / max|ref| against the float64 oracle, normal random data): float32
spectra are complex64 (filter spectra computed in float64, rounded once) and give 2-3e-7 for
every filter size measured, 3x3 to 31x31 and transforms up to 160 x 160 (3-5e-7 on uniform
[0, 1) data, where oneDNN's float32 direct sums reach 0.5-2.4e-6 for 7x7..15x15).  Outputs
that are exactly zero (every tap in the padding) come out as roundoff, ~1e-7 of the data
scale.  float64 runs in complex128: ~1e-15.
"""

import math

import numba
import numpy as np
import rocket_fft  # low-level r2c/c2r (write into given arrays, explicit scale, nthreads)
from numba import njit, prange

# Cost model constants (fp32, seconds), measured on the 2-core Zen 5 machine.  One r2c or
# c2r of a P x Q plane (batched), single thread: 0.10 us at 8x8, 0.32 us at 16x16, 1.1 us at
# 32x32, 4.0 us at 64x64 -> a + b * PQ log2 PQ.  The model ranked the measured-fastest tiling
# first on 32->32 64x64 9x9/15x15, ResNet conv1, 3x3 @56 and @14 (all tilings timed).
_FFT_A = 0.07e-6
_FFT_B = 0.08e-9
# Channel GEMM: one tile is bound by streaming the filter spectra (90 GB/s from L3, 45 GB/s
# from DRAM); several tiles reuse them and reach ~180 GFLOP/s (8 flops per complex MAC).
_BW_L3 = 90e9
_BW_DRAM = 45e9
_L3 = 24e6
_RATE_ONE = 100e9
_RATE_MANY = 180e9
# Gather, transposes and crop: bytes moved at ~20 GB/s.
_BW_PASS = 20e9
# Tilings whose filter spectra exceed this many bytes are taken only if nothing smaller exists.
_MAX_WS_BYTES = 256 << 20


def supports(spec):
    """Every valid problem is computed.

    Parameters
    ----------
    spec : ConvSpec-like

    Returns
    -------
    None
    """
    return None


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


def _axis_map(size, pad, s, phases, rf, o, th, p):
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
        Input row at each position, -1 for zero.
    """
    if p < th:
        return None
    tiles = -(-o // th)
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
            m = np.arange(first, last + 1)
            rows[a, j, (m - lo) % p] = m * s + phi - pad
    return rows


def _axis_candidates(size, pad, s, phases, rf, o):
    """Tilings (th, p, rows) of one axis: one tile, and overlap-save tiles of every fast p."""
    cands = {}
    # one tile: shrink p as far as the wrap-around rule allows
    p = _good_size(max(o, 1))
    while True:
        rows = _axis_map(size, pad, s, phases, rf, o, o, p)
        if rows is not None:
            cands[p] = (o, p, rows)
            break
        p = _good_size(p + 1)
    p_one = p
    q = _good_size(max(rf, 2))
    while q < p_one:
        th = min(o, q - rf + 1)
        if th >= 1:
            rows = _axis_map(size, pad, s, phases, rf, o, th, q)
            if rows is not None and q not in cands:
                cands[q] = (th, q, rows)
        q = _good_size(q + 1)
    return list(cands.values())


def _cost(spec, nt, cc, p, q, itemsize):
    """Modelled seconds of one call (see the constants above)."""
    f = p * (q // 2 + 1)
    threads = max(numba.get_num_threads(), 1)
    planes = nt * (cc + spec.k)
    fft = planes * (_FFT_A + _FFT_B * p * q * math.log2(max(p * q, 2))) / threads
    ws_bytes = 2 * itemsize * f * spec.kg * (cc // spec.groups) * spec.groups
    flops = 8.0 * nt * f * spec.kg * (cc // spec.groups) * spec.groups
    bw = _BW_L3 if ws_bytes < _L3 else _BW_DRAM
    rate = (_RATE_ONE if nt == 1 else _RATE_MANY) * 4 / itemsize
    gemm = max(ws_bytes / bw, flops / rate)
    passes = planes * p * q * 3 * itemsize / _BW_PASS
    return fft + gemm + passes, ws_bytes


def _plan(spec):
    """Choose the tiling of both axes with the cost model."""
    pt, pb, pl, pr = spec.pads
    ph_h, rf_h = _axis_phases(spec.r, spec.sh, spec.dh)
    ph_w, rf_w = _axis_phases(spec.s, spec.sw, spec.dw)
    cands_h = _axis_candidates(spec.h, pt, spec.sh, ph_h, rf_h, spec.oh)
    cands_w = _axis_candidates(spec.w, pl, spec.sw, ph_w, rf_w, spec.ow)
    cc = spec.c * len(ph_h) * len(ph_w)
    itemsize = np.dtype(spec.dtype).itemsize
    best = None
    for ch in cands_h:
        for cw in cands_w:
            nt = spec.n * ch[2].shape[0] * cw[2].shape[0]
            cost, ws_bytes = _cost(spec, nt, cc, ch[1], cw[1], itemsize)
            key = (ws_bytes > _MAX_WS_BYTES, cost)
            if best is None or key < best[0]:
                best = (key, ch, cw)
    _, (th, p, rows), (tw, q, cols) = best
    return dict(ph_h=ph_h, rf_h=rf_h, ph_w=ph_w, rf_w=rf_w, th=th, p=p, rows=rows,
                tw=tw, q=q, cols=cols)


def _filter_spectra(w, spec, plan):
    """Conjugate, scaled spectra of the phase filters, (groups, F, kg, 2, ccg), spec.dtype.

    Computed in float64 and rounded once, a few output channels at a time so that the float64
    temporaries stay near 64 MB.  ``1 / (P Q)`` of the inverse transform is folded in.
    """
    k, cg, r, s = w.shape
    p, q = plan["p"], plan["q"]
    ph_h, ph_w = plan["ph_h"], plan["ph_w"]
    nph = len(ph_h) * len(ph_w)
    f = p * (q // 2 + 1)
    kg = spec.kg
    out = np.empty((spec.groups, f, kg, 2, cg * nph), dtype=spec.dtype)
    w64 = np.asarray(w, dtype=np.float64)
    step = max(1, (64 << 20) // (cg * nph * p * q * 8))
    for k0 in range(0, k, step):
        k1 = min(k, k0 + step)
        buf = np.zeros((k1 - k0, cg, len(ph_h), len(ph_w), p, q))
        for u in range(r):
            vh = u * spec.dh
            i = ph_h.index(vh % spec.sh)
            row = (vh // spec.sh) % p  # a single tile may be shorter than the filter: taps alias
            for v in range(s):
                vw = v * spec.dw
                j = ph_w.index(vw % spec.sw)
                col = (vw // spec.sw) % q
                buf[:, :, i, j, row, col] += w64[k0:k1, :, u, v]
        sw = np.conj(np.fft.rfft2(buf)) / (p * q)  # (kc, cg, nph_h, nph_w, P, Q//2+1)
        sw = sw.reshape(k1 - k0, cg * nph, f).transpose(2, 0, 1)  # (F, kc, ccg)
        for kk in range(k0, k1):
            g, kl = divmod(kk, kg)
            out[g, :, kl, 0, :] = sw[:, kk - k0, :].real
            out[g, :, kl, 1, :] = sw[:, kk - k0, :].imag
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
        # One batched single-threaded call per numba thread.  ducc's per-call overhead is
        # ~0.4 us, and its own workers (nthreads=2 on the whole batch) measured a little
        # slower (2.9 vs 2.75 us per 72 x 72 plane) and would add a second thread pool.
        rocket_fft.r2c(xt[lo:hi], xf[lo:hi], axes, True, 1.0, 1)


@njit(parallel=True, cache=True)
def _to_split(xf, xs, ccg):
    """(nt*cc, P, Q//2+1) complex spectra -> (nt, F, groups, 2, ccgp) split, channels innermost.

    A pass of its own: transposing inside _forward, right after each thread's r2c, measured
    slower (0.06 vs 0.035 ms on 32 channels of 72 x 72).  ``ccgp >= ccg`` pads the channel
    axis (see prepare).
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


@njit(parallel=True, fastmath=True, cache=True)
def _channel_gemm(xs, ws, yv, zero):
    """Per frequency and group, ``Y[t, k] = sum_c X[t, c] W[k, c]`` (complex).

    xs (nt, F, groups, 2, ccgp >= ccg); ws (groups, F, kg, 2, ccg); yv (nt, k, F, 2) output.
    Every inner index is a bare loop counter: with an offset ``c0 + c`` numba tests the
    index for wrap-around per element and the loop ran 3-6x slower.  Blocks of 2 tiles x 2
    output channels share each load (210 vs 110 GFLOP/s unblocked with 9 tiles, 64 channels);
    one tile uses 1 x 1 blocks, which stream the filter spectra fastest (~100 GB/s from L3).
    fastmath lets LLVM vectorise the sums over channels.  Vectorising over output channels
    instead (accumulators in memory, no horizontal sums) measured 2-4x slower.
    """
    nt, f = xs.shape[0], xs.shape[1]
    g_n, _, kg, _, ccg = ws.shape
    t2 = nt - nt % 2
    k2 = kg - kg % 2 if nt > 1 else 0
    for job in prange(g_n * f):
        g, fi = job // f, job % f
        for k in range(0, k2, 2):
            kk = g * kg + k
            for t in range(0, t2, 2):
                a0r = zero
                a0i = zero
                a1r = zero
                a1i = zero
                b0r = zero
                b0i = zero
                b1r = zero
                b1i = zero
                for c in range(ccg):
                    x0r = xs[t, fi, g, 0, c]
                    x0i = xs[t, fi, g, 1, c]
                    x1r = xs[t + 1, fi, g, 0, c]
                    x1i = xs[t + 1, fi, g, 1, c]
                    wr = ws[g, fi, k, 0, c]
                    wi = ws[g, fi, k, 1, c]
                    a0r += wr * x0r - wi * x0i
                    a0i += wr * x0i + wi * x0r
                    a1r += wr * x1r - wi * x1i
                    a1i += wr * x1i + wi * x1r
                    wr = ws[g, fi, k + 1, 0, c]
                    wi = ws[g, fi, k + 1, 1, c]
                    b0r += wr * x0r - wi * x0i
                    b0i += wr * x0i + wi * x0r
                    b1r += wr * x1r - wi * x1i
                    b1i += wr * x1i + wi * x1r
                yv[t, kk, fi, 0] = a0r
                yv[t, kk, fi, 1] = a0i
                yv[t + 1, kk, fi, 0] = a1r
                yv[t + 1, kk, fi, 1] = a1i
                yv[t, kk + 1, fi, 0] = b0r
                yv[t, kk + 1, fi, 1] = b0i
                yv[t + 1, kk + 1, fi, 0] = b1r
                yv[t + 1, kk + 1, fi, 1] = b1i
            for t in range(t2, nt):
                a0r = zero
                a0i = zero
                b0r = zero
                b0i = zero
                for c in range(ccg):
                    x0r = xs[t, fi, g, 0, c]
                    x0i = xs[t, fi, g, 1, c]
                    wr = ws[g, fi, k, 0, c]
                    wi = ws[g, fi, k, 1, c]
                    a0r += wr * x0r - wi * x0i
                    a0i += wr * x0i + wi * x0r
                    wr = ws[g, fi, k + 1, 0, c]
                    wi = ws[g, fi, k + 1, 1, c]
                    b0r += wr * x0r - wi * x0i
                    b0i += wr * x0i + wi * x0r
                yv[t, kk, fi, 0] = a0r
                yv[t, kk, fi, 1] = a0i
                yv[t, kk + 1, fi, 0] = b0r
                yv[t, kk + 1, fi, 1] = b0i
        for k in range(k2, kg):
            kk = g * kg + k
            for t in range(nt):
                a0r = zero
                a0i = zero
                for c in range(ccg):
                    x0r = xs[t, fi, g, 0, c]
                    x0i = xs[t, fi, g, 1, c]
                    wr = ws[g, fi, k, 0, c]
                    wi = ws[g, fi, k, 1, c]
                    a0r += wr * x0r - wi * x0i
                    a0i += wr * x0i + wi * x0r
                yv[t, kk, fi, 0] = a0r
                yv[t, kk, fi, 1] = a0i


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
def workspace(spec):
    """Bytes `prepare` and one call allocate, from the plan: the filter spectra, the float64
    temporaries that build them (bounded near 64 MB), and the transform buffers."""
    plan = _plan(spec)
    p, q = plan["p"], plan["q"]
    nph = len(plan["ph_h"]) * len(plan["ph_w"])
    cc = spec.c * nph
    nt = spec.n * plan["rows"].shape[0] * plan["cols"].shape[0]
    f = p * (q // 2 + 1)
    b = spec.itemsize
    spectra = b * 2 * f * spec.k * spec.cg * nph
    temporaries = 4 * min(64 << 20, 8 * spec.k * spec.cg * nph * p * q) + 16 * spec.params
    planes = b * nt * (cc + spec.k) * (p * q + 2 * f) + b * nt * f * 2 * (cc + 8 * spec.groups)
    return spectra + temporaries + planes


def prepare(w, spec):
    """Plan the tiling, transform the filter once and allocate every workspace.

    Parameters
    ----------
    w : numpy.ndarray (k, c // groups, r, s), spec.dtype
    spec : ConvSpec-like

    Returns
    -------
    compute : callable
        ``compute(x, out)`` writes the cross-correlation of ``x`` (n, c, h, w) into ``out``
        (n, k, oh, ow).  ``compute.plan`` records the chosen transform size and tiling.
    """
    dtype = np.dtype(spec.dtype)
    cdtype = np.complex64 if dtype == np.float32 else np.complex128
    plan = _plan(spec)
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

    def compute(x, out):
        nthreads = numba.get_num_threads()
        _forward(x, rows, cols, nph_w, xt, xf, nthreads)
        _to_split(xf, xs, ccg)
        _channel_gemm(xs, ws, yv, zero)
        _inverse(yf, yt, th, tw, mh, mw, out, nthreads)

    compute.plan = dict(p=p, q=q, th=th, tw=tw, tiles=(mh, mw), channels=cc)
    return compute
