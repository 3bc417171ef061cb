"""Depthwise convolution (groups == c) and the depthwise-separable operator of MobileNet.

Layout
------
NCHW input, weights (c*m, 1, r, s) for a channel multiplier m = k // c: output channel o
reads input channel o // m, as PyTorch's ``conv2d(..., groups=c)`` does.  Each thread
works in its own workspaces (indexed by ``numba.get_thread_id``); their zero padding is
written once, in `prepare`, and never touched again.

Depthwise convolution does only 2*r*s flops per input element: it is bound by moving the
planes in and out and by per-plane overhead, not by arithmetic.  Two strategies:

*Planes* (outputs larger than 16x16), ``prange`` over the n*c input planes:

1. *Fill*: copy the plane into a zero-padded workspace split into its sh*sw polyphase
   components: phase (py, px) holds padded pixel (Y, X) with Y % sh == py, X % sw == px at
   (Y // sh, X // sw); every phase is an (hq, wq) plane.
2. *Taps*: tap (i, j) reads phase ((i*dh) % sh, (j*dw) % sw) shifted by ((i*dh) // sh,
   (j*dw) // sw), so in the flattened phases every tap is a unit-stride shift of the same
   flat output index q = oy*wq + ox, and the whole plane is one long loop
   ``acc[q] += w_t * phase_t[q + off_t]`` that LLVM vectorizes with 512-bit vectors; the
   wq - ow columns of each row that straddle the border are computed and thrown away.
   Taps are fused 9 (else 3, else 1) per pass.  Stride 2 thus costs one deinterleaving
   copy, not strided loads in the hot loop.
3. *Copy out* the ow valid columns of each accumulator row.

*Channel lanes* (outputs up to 16x16, inputs up to ~28x28), ``prange`` over blocks of 16
output channels: transpose the block into a padded pixel-major workspace (hp, wp, 16),
compute every output pixel as 16-channel vectors (one FMA per tap for 16 planes, no
wasted columns), transpose back.  On 7x7 planes this beats planes 1.6x: there a plane's
rows are too short for the loops' vector bodies and fixed costs dominate.

Supported: groups == c, any multiplier, stride, padding (asymmetric too), dilation, filter
size, batch, float32/float64.  Error: that of direct summation in the input dtype (~1e-7
relative in float32); taps are summed in a fixed order with FMAs.

The separable operator (``supports_separable``, ``prepare_separable``) runs the depthwise
stage into a buffer and the pointwise 1x1 stage as one BLAS GEMM per image (Howard et al.,
2017, "MobileNets", arXiv:1704.04861).  `compute` must not be called from two threads at
once: a prepared layer's workspaces are shared.
"""

import numba
import numpy as np
from numba import njit, prange
from numba import uint64 as U

from kernels.cpu.common import single_threaded_blas, with_phases

# Unsigned indices: numba checks signed indices for wraparound, which stops LLVM from
# vectorizing (a 112x112 plane took 72 us with int64 indices, 14 us with uint64).
_VB = 64    # flat loop lengths are rounded up to this: 16 f32 lanes x 4-way unroll, no tail
_LB = 2048  # flat positions per block: a block's accumulator (8 KiB in f32) stays in L1
_FM = {"contract"}  # FMAs only; no reassociation, so results do not depend on vector width
_CB = 16    # channels per lane block of the small-plane strategy: one f32 zmm
# channel lanes beat planes up to 16x16 outputs from up to ~28x28 inputs (3x3, 2 threads:
# 7x7 26 vs 41 us, 14x14 39 vs 44; 32->16 s2 75 vs 45, 18x18 38 vs 33)
_LANES_MAX_PIXELS = 256
_LANES_MAX_INPUT = 800


@njit(cache=True, fastmath=_FM)
def _fill(x, xb, h, w, ws, wb, rowdst, colsrc, coldst, colcnt, sw):
    """Copy input plane ``x[xb:xb + h*w]`` into the phase planes at ``ws[wb:]``.

    ``rowdst[y, px]`` is the offset of the phase row that input row y feeds in column
    phase px (-1: no tap reads it); input column colsrc[px] + t*sw goes to column
    coldst[px] + t of it, for t < colcnt[px].  Tables come from `_geometry`: no division
    here, it costs more than the copy on 7x7 planes.
    """
    for y in range(h):
        src = U(xb + y * w)
        if sw == 1:
            if rowdst[y, 0] >= 0:
                dst = U(wb + rowdst[y, 0] + coldst[0])
                for t in range(U(w)):
                    ws[dst + t] = x[src + t]
        elif sw == 2 and rowdst[y, 0] >= 0 and rowdst[y, 1] >= 0:
            # both column phases from one pass over the row: LLVM turns the pair of
            # stride-2 loads into vector loads and permutes
            pe = 0 if colsrc[0] == 0 else 1  # phase of the even input columns
            d0 = U(wb + rowdst[y, pe] + coldst[pe])
            d1 = U(wb + rowdst[y, 1 - pe] + coldst[1 - pe])
            for t in range(U(w // 2)):
                ws[d0 + t] = x[src + U(2) * t]
                ws[d1 + t] = x[src + U(2) * t + U(1)]
            if w % 2:
                ws[d0 + U(w // 2)] = x[src + U(w - 1)]
        else:
            usw = U(sw)
            for px in range(sw):
                if rowdst[y, px] < 0:
                    continue
                dst = U(wb + rowdst[y, px] + coldst[px])
                s0 = src + U(colsrc[px])
                for t in range(U(colcnt[px])):
                    ws[dst + t] = x[s0 + t * usw]


@njit(cache=True, fastmath=_FM)
def _taps(ws, wt, tb, toff, wb, t0, nt, acc, ab, q0, nq, first):
    """``acc[ab+q0+q] (+)= sum_t wt[tb+t] * ws[wb+toff[t]+q0+q]`` for taps t0..t0+nt-1.

    nt is 9, 3 or 1; q < nq, a multiple of _VB.  ``first`` assigns instead of adding.
    """
    n = U(nq)
    acc0 = U(ab + q0)
    base = wb + q0
    if nt == 9:
        a0 = U(base + toff[t0]); a1 = U(base + toff[t0 + 1]); a2 = U(base + toff[t0 + 2])  # noqa: E702
        a3 = U(base + toff[t0 + 3]); a4 = U(base + toff[t0 + 4]); a5 = U(base + toff[t0 + 5])  # noqa: E702
        a6 = U(base + toff[t0 + 6]); a7 = U(base + toff[t0 + 7]); a8 = U(base + toff[t0 + 8])  # noqa: E702
        w0 = wt[tb + t0]; w1 = wt[tb + t0 + 1]; w2 = wt[tb + t0 + 2]  # noqa: E702
        w3 = wt[tb + t0 + 3]; w4 = wt[tb + t0 + 4]; w5 = wt[tb + t0 + 5]  # noqa: E702
        w6 = wt[tb + t0 + 6]; w7 = wt[tb + t0 + 7]; w8 = wt[tb + t0 + 8]  # noqa: E702
        for q in range(n):
            v = (w0 * ws[a0 + q] + w1 * ws[a1 + q] + w2 * ws[a2 + q]
                 + w3 * ws[a3 + q] + w4 * ws[a4 + q] + w5 * ws[a5 + q]
                 + w6 * ws[a6 + q] + w7 * ws[a7 + q] + w8 * ws[a8 + q])
            acc[acc0 + q] = v if first else acc[acc0 + q] + v
    elif nt == 3:
        a0 = U(base + toff[t0]); a1 = U(base + toff[t0 + 1]); a2 = U(base + toff[t0 + 2])  # noqa: E702
        w0 = wt[tb + t0]; w1 = wt[tb + t0 + 1]; w2 = wt[tb + t0 + 2]  # noqa: E702
        for q in range(n):
            v = w0 * ws[a0 + q] + w1 * ws[a1 + q] + w2 * ws[a2 + q]
            acc[acc0 + q] = v if first else acc[acc0 + q] + v
    else:
        a0 = U(base + toff[t0])
        w0 = wt[tb + t0]
        for q in range(n):
            v = w0 * ws[a0 + q]
            acc[acc0 + q] = v if first else acc[acc0 + q] + v


@njit(parallel=True, cache=True, fastmath=_FM)
def _planar(x, out, wt, c, h, w, m, oh, ow, wq, L, sw, rowdst, colsrc, coldst, colcnt,
            toff, chunks, ws, wsize, acc, asize):
    """All planes: x (n, c, h, w), out (n, c*m, oh, ow) and wt (c*m, r, s), all flattened.

    ws / acc hold one phase workspace (wsize) / accumulator (asize) per thread.
    """
    n = x.shape[0] // (c * h * w)
    ntap = toff.shape[0]
    for p in prange(n * c):
        tid = numba.get_thread_id()
        wb = tid * wsize
        ab = tid * asize
        _fill(x, p * h * w, h, w, ws, wb, rowdst, colsrc, coldst, colcnt, sw)
        for o in range(p * m, (p + 1) * m):  # (image, output channel) plane, flat
            tb = (o % (c * m)) * ntap
            for q0 in range(0, L, _LB):
                nq = min(_LB, L - q0)
                for ci in range(chunks.shape[0] - 1):
                    t0 = chunks[ci]
                    _taps(ws, wt, tb, toff, wb, t0, chunks[ci + 1] - t0, acc, ab, q0, nq,
                          ci == 0)
            ob = U(o * oh * ow)
            for oy in range(U(oh)):
                for ox in range(U(ow)):
                    out[ob + oy * U(ow) + ox] = acc[U(ab) + oy * U(wq) + ox]


# --------------------------------------------------------- channel lanes (small planes)


@njit(cache=True, fastmath=_FM)
def _lanes_fill(x, lsrc, lb, h, w, ws, wb, wp, pt, pl):
    """Transpose the _CB planes at ``x[lsrc[lb+v]:]`` into pixel-major ``ws[wb:]`` (hp, wp, _CB)."""
    for y in range(h):
        for xx in range(w):
            d = U(wb + ((y + pt) * wp + xx + pl) * _CB)
            s = U(y * w + xx)
            for v in range(U(_CB)):
                ws[d + v] = x[U(lsrc[lb + v]) + s]


@njit(cache=True, fastmath=_FM)
def _lanes_taps(ws, wb, wc, cb, toff, t0, nt, o16, ob, oh, ow, sh, sw, wp, first):
    """``o16[ob + (oy*ow+ox)*_CB + v] (+)= sum_t wc[cb + t*_CB + v] * ws[pin + toff[t] + v]``.

    pin = wb + (oy*sh*wp + ox*sw)*_CB, the first padded pixel output (oy, ox) reads; taps
    t0..t0+nt-1, nt 9, 3 or 1; one _CB-wide vector per output pixel and tap.  Addresses
    are hoisted out of the pixel loop: computing them per pixel cost 25% on 7x7 planes.
    """
    e = U(_CB)
    k0 = U(cb + t0 * _CB)
    k1 = k0 + e; k2 = k1 + e; k3 = k2 + e; k4 = k3 + e  # noqa: E702
    k5 = k4 + e; k6 = k5 + e; k7 = k6 + e; k8 = k7 + e  # noqa: E702
    step = U(sw * _CB)
    for oy in range(oh):
        row = wb + oy * sh * wp * _CB
        po = U(ob + oy * ow * _CB)
        if nt == 9:
            a0 = U(row + toff[t0]); a1 = U(row + toff[t0 + 1]); a2 = U(row + toff[t0 + 2])  # noqa: E702
            a3 = U(row + toff[t0 + 3]); a4 = U(row + toff[t0 + 4]); a5 = U(row + toff[t0 + 5])  # noqa: E702
            a6 = U(row + toff[t0 + 6]); a7 = U(row + toff[t0 + 7]); a8 = U(row + toff[t0 + 8])  # noqa: E702
            for ox in range(U(ow)):
                d = ox * step
                p = po + ox * e
                for v in range(e):
                    s = (wc[k0 + v] * ws[a0 + d + v] + wc[k1 + v] * ws[a1 + d + v]
                         + wc[k2 + v] * ws[a2 + d + v] + wc[k3 + v] * ws[a3 + d + v]
                         + wc[k4 + v] * ws[a4 + d + v] + wc[k5 + v] * ws[a5 + d + v]
                         + wc[k6 + v] * ws[a6 + d + v] + wc[k7 + v] * ws[a7 + d + v]
                         + wc[k8 + v] * ws[a8 + d + v])
                    o16[p + v] = s if first else o16[p + v] + s
        elif nt == 3:
            a0 = U(row + toff[t0]); a1 = U(row + toff[t0 + 1]); a2 = U(row + toff[t0 + 2])  # noqa: E702
            for ox in range(U(ow)):
                d = ox * step
                p = po + ox * e
                for v in range(e):
                    s = (wc[k0 + v] * ws[a0 + d + v] + wc[k1 + v] * ws[a1 + d + v]
                         + wc[k2 + v] * ws[a2 + d + v])
                    o16[p + v] = s if first else o16[p + v] + s
        else:
            a0 = U(row + toff[t0])
            for ox in range(U(ow)):
                d = ox * step
                p = po + ox * e
                for v in range(e):
                    s = wc[k0 + v] * ws[a0 + d + v]
                    o16[p + v] = s if first else o16[p + v] + s


@njit(parallel=True, cache=True, fastmath=_FM)
def _lanes(x, out, wc, c, h, w, m, oh, ow, sh, sw, wp, pt, pl, toff, chunks, ws, wsize,
           o16, osize, lsrc):
    """All planes, _CB output channels at a time: x (n, c, h, w), out (n, c*m, oh, ow) flat.

    wc (blocks, r*s, _CB) holds the weights lane-minor (zero past channel c*m); ws / o16 /
    lsrc (32 per thread) are per-thread input, output and lane-source workspaces.
    """
    k = c * m
    nb = (k + _CB - 1) // _CB
    n = x.shape[0] // (c * h * w)
    ntap = toff.shape[0]
    for p in prange(n * nb):
        tid = numba.get_thread_id()
        b = p // nb
        o0 = (p % nb) * _CB
        lb = tid * 32
        for v in range(_CB):  # lanes past the last channel re-read it; never stored
            lsrc[lb + v] = (b * c + min(o0 + v, k - 1) // m) * h * w
        wb = tid * wsize
        ob = tid * osize
        _lanes_fill(x, lsrc, lb, h, w, ws, wb, wp, pt, pl)
        for ci in range(chunks.shape[0] - 1):
            t0 = chunks[ci]
            _lanes_taps(ws, wb, wc, (p % nb) * ntap * _CB, toff, t0, chunks[ci + 1] - t0,
                        o16, ob, oh, ow, sh, sw, wp, ci == 0)
        for v in range(min(_CB, k - o0)):
            dst = U((b * k + o0 + v) * oh * ow)
            for q in range(U(oh * ow)):
                out[dst + q] = o16[U(ob) + q * U(_CB) + U(v)]


# ---------------------------------------------------------------------- layer setup


def _chunks(ntap):
    """Tap boundaries of the fused passes: 9 taps a pass, then 3, then 1."""
    bounds = [0]
    while bounds[-1] < ntap:
        left = ntap - bounds[-1]
        bounds.append(bounds[-1] + (9 if left >= 9 else 3 if left >= 3 else 1))
    return np.array(bounds, np.int64)


class _Planar:
    """The polyphase plane-at-a-time strategy for one layer: tables, weights, workspaces."""

    def __init__(self, w, spec, m):
        h, wd, r, s = spec.h, spec.w, spec.r, spec.s
        sh, sw, dh, dw = spec.sh, spec.sw, spec.dh, spec.dw
        pt, _, pl, _ = spec.pads
        oh, ow = spec.oh, spec.ow
        # a phase must hold every input pixel and every pixel a valid output reads
        hq = max(oh + ((r - 1) * dh) // sh, (h + pt + sh - 1) // sh)
        wq = max(ow + ((s - 1) * dw) // sw, (wd + pl + sw - 1) // sw)
        L = ((oh - 1) * wq + ow + _VB - 1) // _VB * _VB  # flat outputs, padded
        toff = np.empty(r * s, np.int64)
        used = np.zeros(sh * sw, np.bool_)
        for i in range(r):
            for j in range(s):
                phase = ((i * dh) % sh) * sw + (j * dw) % sw
                toff[i * s + j] = (phase * hq + (i * dh) // sh) * wq + (j * dw) // sw
                used[phase] = True
        rowdst = np.full((h, sw), -1, np.int64)
        for y in range(h):
            py, yy = (y + pt) % sh, (y + pt) // sh
            for px in range(sw):
                if used[py * sw + px]:
                    rowdst[y, px] = ((py * sw + px) * hq + yy) * wq
        colsrc = np.array([(px - pl) % sw for px in range(sw)], np.int64)
        coldst = (colsrc + pl) // sw
        colcnt = np.maximum(0, (wd - colsrc + sw - 1) // sw)
        # the flat loop reads up to _VB past the last phase; the 16-element gaps keep the
        # threads' regions on separate cache lines whatever the base alignment (false
        # sharing of the accumulators tripled the 2-thread time on 7x7 planes)
        wsize = (sh * sw * hq * wq + _VB + 15) // 16 * 16 + 16
        asize = (L + 15) // 16 * 16 + 16
        nt = numba.config.NUMBA_NUM_THREADS
        ws = np.zeros(nt * wsize, spec.dtype)  # the zero padding is never written again
        acc = np.empty(nt * asize, spec.dtype)
        wt = np.ascontiguousarray(np.asarray(w, dtype=spec.dtype)).reshape(-1)  # (c*m*r*s,)
        self.args = (wt, spec.c, h, wd, m, oh, ow, wq, L, sw, rowdst, colsrc, coldst, colcnt,
                     toff, _chunks(r * s), ws, wsize, acc, asize)

    def __call__(self, x, out):
        _planar(x, out, *self.args)


class _Lanes:
    """The channel-lane strategy for one layer: tables, weights, workspaces."""

    def __init__(self, w, spec, m):
        c, h, wd, r, s = spec.c, spec.h, spec.w, spec.r, spec.s
        pt, pb, pl, pr = spec.pads
        hp, wp = h + pt + pb, wd + pl + pr
        oh, ow = spec.oh, spec.ow
        k = c * m
        nb = (k + _CB - 1) // _CB
        wc = np.zeros((nb * _CB, r * s), spec.dtype)
        wc[:k] = np.asarray(w, dtype=spec.dtype).reshape(k, r * s)
        wc = np.ascontiguousarray(wc.reshape(nb, _CB, r * s).transpose(0, 2, 1)).reshape(-1)
        toff = np.array([(i * spec.dh * wp + j * spec.dw) * _CB
                         for i in range(r) for j in range(s)], np.int64)
        wsize = hp * wp * _CB + 16  # 16: threads on separate cache lines (see _Planar)
        osize = oh * ow * _CB + 16
        nt = numba.config.NUMBA_NUM_THREADS
        ws = np.zeros(nt * wsize, spec.dtype)  # the zero padding is never written again
        o16 = np.empty(nt * osize, spec.dtype)
        lsrc = np.zeros(nt * 32, np.int64)
        self.args = (wc, c, h, wd, m, oh, ow, spec.sh, spec.sw, wp, pt, pl, toff,
                     _chunks(r * s), ws, wsize, o16, osize, lsrc)

    def __call__(self, x, out):
        _lanes(x, out, *self.args)


def _strategy(w, spec, m):
    """Channel lanes for small planes, where the per-plane and per-row overheads dominate."""
    if spec.oh * spec.ow <= _LANES_MAX_PIXELS and spec.h * spec.w <= _LANES_MAX_INPUT:
        return _Lanes(w, spec, m)
    return _Planar(w, spec, m)


def workspace(spec):
    """Bytes `prepare` and one call allocate (an upper bound): per-thread padded planes or
    16-channel blocks, their accumulators, and the reordered weights."""
    pt, pb, pl, pr = spec.pads
    hp, wp = spec.h + pt + pb + spec.sh, spec.w + pl + pr + spec.sw
    per_thread = _CB * (hp * wp + spec.oh * spec.ow) + 2 * _VB + 64
    weights = (spec.k + _CB) * spec.r * spec.s
    return spec.itemsize * (numba.config.NUMBA_NUM_THREADS * per_thread + weights)


def workspace_separable(spec):
    """`workspace` of the depthwise stage plus the intermediate and the pointwise weights."""
    return workspace(spec) + spec.itemsize * (spec.n * spec.c * spec.oh * spec.ow
                                              + spec.k * spec.c)


def supports(spec):
    """None when ``spec`` is a depthwise convolution (groups == c), else the reason."""
    if spec.groups != spec.c:
        return f"depthwise needs groups == c ({spec.c}), got groups={spec.groups}"
    return None


def prepare(w, spec):
    """Index tables and workspaces for depthwise ``spec``; returns ``compute(x, out)``.

    Parameters
    ----------
    w : ndarray (k, 1, r, s)
        k = c*m; output channel o reads input channel o // m.
    spec : ConvSpec-like
        With groups == c.
    """
    reason = supports(spec)
    if reason:
        raise ValueError(reason)
    run = _strategy(w, spec, spec.k // spec.c)

    def compute(x, out):
        run(x.reshape(-1), out.reshape(-1))

    return compute


# ---------------------------------------------------------------------- separable


def supports_separable(spec):
    """None when ``spec`` (the standard convolution replaced) has groups == 1."""
    if spec.groups != 1:
        return f"separable replaces a convolution with groups == 1, got groups={spec.groups}"
    return None


@njit(parallel=True, cache=True)
def _pointwise(wp, mid, out, kblocks):
    """out[b] (k, oh*ow) = wp (k, c*m) @ mid[b] (c*m, oh*ow), as ``kblocks`` row blocks per
    image, one single-threaded BLAS GEMM per Numba thread (see `single_threaded_blas`)."""
    k = wp.shape[0]
    for j in prange(mid.shape[0] * kblocks):
        b, kb = j // kblocks, j % kblocks
        k0, k1 = kb * k // kblocks, (kb + 1) * k // kblocks
        np.dot(wp[k0:k1], mid[b], out[b, k0:k1])


def separable_weights(ws, spec):
    """``(w_depthwise, w_pointwise, m)`` checked against ``spec`` (the standard convolution
    replaced, groups == 1): shapes (c*m, 1, r, s) and (k, c*m, 1, 1), m the multiplier."""
    reason = supports_separable(spec)
    if reason:
        raise ValueError(reason)
    w_dw, w_pw = ws
    c, k = spec.c, spec.k
    m = max(w_dw.shape[0] // c, 1)
    if w_dw.shape != (c * m, 1, spec.r, spec.s) or w_pw.shape != (k, c * m, 1, 1):
        raise ValueError(f"separable weights must be ({c * m}, 1, {spec.r}, {spec.s}) and "
                         f"({k}, {c * m}, 1, 1) for multiplier {m}, got {w_dw.shape} and "
                         f"{w_pw.shape}")
    return w_dw, w_pw, m


def prepare_separable(ws, spec):
    """Depthwise r x s then pointwise 1x1: the separable replacement of ``spec``.

    Parameters
    ----------
    ws : (w_depthwise, w_pointwise)
        Shapes (c*m, 1, r, s) and (k, c*m, 1, 1).
    spec : ConvSpec-like
        The standard convolution c -> k that the pair replaces: its r, s, stride, padding
        and dilation are the depthwise stage's; groups == 1.

    The channel multiplier m is w_depthwise.shape[0] // c.

    Returns
    -------
    compute(x, out)
        x (n, c, h, w), out (n, k, oh, ow).  The (n, c*m, oh, ow) intermediate is allocated here.

    Notes
    -----
    Calling OpenBLAS' own threads right after the depthwise ``prange`` made a MobileNet
    block take 8 ms instead of ~0.4 ms (Numba's OpenMP workers spin and starve OpenBLAS'
    worker), so the pointwise GEMM runs as row blocks on Numba's threads, BLAS on one
    thread each (`kernels.cpu.common.single_threaded_blas`).
    """
    w_dw, w_pw, m = separable_weights(ws, spec)
    n, c, k = spec.n, spec.c, spec.k
    depthwise = _strategy(w_dw, spec, m)
    wp = np.ascontiguousarray(np.asarray(w_pw, dtype=spec.dtype).reshape(k, c * m))
    mid = np.empty((n, c * m, spec.oh * spec.ow), dtype=spec.dtype)

    kblocks = min(numba.get_num_threads(), k)

    def depthwise_stage(x, out):
        depthwise(x.reshape(-1), mid.reshape(-1))

    def pointwise_stage(x, out):
        with single_threaded_blas():
            _pointwise(wp, mid, out.reshape(n, k, spec.oh * spec.ow), kblocks)

    return with_phases(("depthwise", depthwise_stage), ("pointwise", pointwise_stage))


def composed_weight(w_depthwise, w_pointwise, multiplier=1):
    """The standard OIHW weight (k, c, r, s) of depthwise-then-pointwise.

    ``W[o, ci, i, j] = sum_q w_pw[o, ci*m + q] * w_dw[ci*m + q, 0, i, j]``, m the multiplier.
    """
    cm, _, r, s = w_depthwise.shape
    k = w_pointwise.shape[0]
    c = cm // multiplier
    pw = np.asarray(w_pointwise).reshape(k, c, multiplier)        # (k, c, m)
    dw = np.asarray(w_depthwise).reshape(c, multiplier, r, s)      # (c, m, r, s)
    return np.einsum("kcq,cqij->kcij", pw, dw)
