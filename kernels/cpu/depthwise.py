"""Depthwise convolution (groups == c) and the depthwise-separable operator of MobileNet.

Layout
------
NCHW input, weights (c*m, 1, r, s) for a channel multiplier m = k // c: output channel o
reads input channel o // m, as PyTorch's ``conv2d(..., groups=c)`` does.  Each thread
works in its own workspaces (indexed by ``numba.get_thread_id``); their zero padding is
written once, in `prepare`, and never touched again.  `prepare` is cheap: the index
tables depend on the shape alone and are cached (`_plan`), the weights are read in place,
and only the workspaces are allocated, since `convbench.conv2d` prepares on every call.

Depthwise convolution does only 2*r*s flops per input element: a naive loop is bound by
its loads (each tap's input reloaded for every output) and by per-plane and per-row
overhead (loop set-up, LLVM's run-time overlap checks, scalar remainders), not by
arithmetic.  So each input is loaded once for several outputs where it can, and the other
hot loops run over whole planes in whole 16-element chunks (no remainder loops).  Three
strategies, ``prange`` over planes or blocks of planes, each thread in its own workspace
where it needs one:

*3x3, stride 1 with padding 1, or stride 2 with top and left padding 1* (`_rows3`; all of
MobileNet's layers, in PyTorch's symmetric padding or TensorFlow's "same"): each output
plane in column strips of `strip_vecs` vectors, then of one; down a strip, a register tile
holds three output rows (two at stride 2), and each input row, loaded once, is multiplied
into all of them (`_strip3`, `_strip3s2`; at stride 2 a filter row's three tap columns,
every other input element each, come from four loads and three shuffles a vector).  The
plane is read in place, its padding the masked-off elements of the loads (and at stride 2
the rows past the plane, whatever the bottom and right padding): no copy, no workspace.
Stride 1: 1.6-2.6x the flat loop it replaced (which copied each plane between zero rows and
loaded all nine taps of every output vector), from 112x112 planes to 7x7; stride 2:
1.3-2.2x the even/odd column split it replaced with AVX-512, 1.4-1.9x with AVX2, and
1.4-1.9x channel lanes on planes of 20x20 and 14x14.

*Planes* (everything else with outputs larger than 16x16), ``prange`` over the n*c input
planes:

1. *Fill*: copy the plane into a zero-padded workspace split into its sh*sw polyphase
   components: phase (py, px) holds padded pixel (Y, X) with Y % sh == py, X % sw == px at
   (Y // sh, X // sw); every phase is an (hq, wq) plane.
2. *Taps*: tap (i, j) reads phase ((i*dh) % sh, (j*dw) % sw) shifted by ((i*dh) // sh,
   (j*dw) // sw), so in the flattened phases every tap is a unit-stride shift of the same
   flat output index q = oy*wq + ox, and the whole plane is one long loop
   ``acc[q] += w_t * phase_t[q + off_t]`` that LLVM vectorizes with 512-bit vectors; the
   wq - ow columns of each row that straddle the border are computed and thrown away.
   Taps are fused 9 (else 3, else 1) per pass.  3x3 stride 1 (`_taps_pairs`) computes two
   output rows per pass over four input rows: 12 loads for two output vectors, not 18
   (these loads, mostly straddling cache lines, bound the loop: 1.6x on 28x28 planes).
3. *Copy out* the ow valid columns of each accumulator row.

*Channel lanes* (other outputs up to 16x16 from inputs up to ~28x28), ``prange`` over
blocks of 16 output channels: transpose the block into a padded pixel-major workspace
(hp, wp, 16), compute every output pixel as 16-channel vectors (one FMA per tap for 16
planes, no wasted columns), transpose back.  On 7x7 planes this beats planes 1.6x: there
a plane's rows are too short for the loops' vector bodies and fixed costs dominate.

Supported: groups == c, any multiplier, stride, padding (asymmetric too), dilation, filter
size, batch, float32/float64.  Error: that of direct summation in the input dtype (~1e-7
relative in float32).  Taps are summed in a fixed order with FMAs, the same whatever the
vector width: for 9 taps each filter row's three by FMA, then the three row sums; but
`_rows3` sums all nine in one chain of FMAs (row-major), so its results may differ from the
other strategies' in the last bit.

The separable operator (``supports_separable``, ``prepare_separable``) runs the depthwise
stage into a buffer and the pointwise 1x1 stage as one BLAS GEMM per image (Howard et al.,
2017, "MobileNets", arXiv:1704.04861).  `compute` must not be called from two threads at
once: a prepared layer's workspaces are shared.
"""

import functools

import numba
import numpy as np
from numba import njit, prange
from numba import uint64 as U

from convbench_kernels import contract
from convbench_kernels.contract import separable_weights, with_phases
from convbench_kernels.cpu.common import single_threaded_blas
from convbench_kernels.cpu.microkernel import (
    copy_lanes,
    fma_taps3_s2,
    fma_tile_masked,
    stack_tile,
    store_lanes,
)
from convbench_kernels.cpu.target import Target, current, resolve, token

supports = contract.depthwise  # groups == c, any channel multiplier
supports_separable = contract.separable  # the standard convolution replaced: groups == 1

# Unsigned indices: numba checks signed indices for wraparound, which stops LLVM from
# vectorizing (a 112x112 plane took about 5x as long with int64 indices as with uint64).
_VB = 64    # flat loop lengths are rounded up to this: 16 f32 lanes x 4-way unroll, no tail
_CH = 16    # elements per chunk of the chunked loops and of short row copies: one f32 zmm
_SHORT = 32  # rows below this many elements are copied in whole _CH chunks (`_fill`)
_LB = 2048  # flat positions per block: a block's accumulator (8 KiB in f32) stays in L1
_FM = {"contract"}  # FMAs only; no reassociation, so results do not depend on vector width
_CB = 16    # channels per lane block of the small-plane strategy: one f32 zmm
# The chunk and lane sizes above are multiples of every vector width (16 float32 are one
# 512-bit vector, two 256-bit ones, four 128-bit ones): LLVM splits their loops into the
# target's vectors, so they hold on any ISA; the strategy thresholds below are measured
# trade-offs, parameters of `prepare` (`defaults`, `space`).


def defaults(target: Target) -> dict:
    """The shapes at which the strategies hand over (measured on 2 cores, 3x3 filters).

    ``lanes_max_pixels`` and ``lanes_max_input``: channel lanes beat planes up to 16x16
    outputs from up to ~28x28 inputs, where per-plane and per-row overheads dominate (1.6x
    at 7x7, 1.1x at 14x14); beyond, planes' long loops win (1.7x on 32x32 -> 16x16 at stride
    2, 1.15x at 18x18).  ``pairs_min_ow``: ... except for `_taps_pairs` from 14x14 outputs on
    (1.3x faster than lanes at 14x14 and 16x16; on shorter rows 2-3.5x slower).
    ``strip_vecs``: see `strip_vecs`.
    """
    return {"lanes_max_pixels": 256, "lanes_max_input": 800, "pairs_min_ow": 14,
            "strip_vecs": strip_vecs(target)}


def strip_vecs(target: Target) -> int:
    """Vectors a row of `_rows3`'s wide column strips: as many as fit the register file
    with three rows of accumulators, a row's inputs and the nine broadcast weights (3 v + v
    + 9), up to four: 4 with 32 registers, 1 with 16 (AVX2: strips of two, 17 registers,
    ran 1.0-1.2x the time of strips of one).  AVX-512, compute alone, µs, strips of 2 / 4
    vectors (then one-vector strips): stride 1 32@112 41.0 / 36.7, 128@56 45.4 / 41.9,
    256@28 24.2 / 23.9; stride 2 64@112 54.8 / 46.9, 128@56 21.9 / 24.7 (its rows of two
    vectors then run in strips of one), 256@28 and 512@14 even."""
    return max(1, min(4, (target.vector_registers - 9) // 4))


def space(target: Target) -> list[dict]:
    """The hand-over points around the defaults: lanes up to 8x8, 16x16 or 24x24 outputs,
    the row-pair pass from 7 or 14 output columns (no new compilation)."""
    d = defaults(target)
    return [{**d, "lanes_max_pixels": px, "pairs_min_ow": ow}
            for px in (64, 256, 576) for ow in (7, 14)]


def _params(given=None) -> dict:
    return resolve("depthwise", defaults(current()), given)


@njit(cache=True)
def _rounded(n, end, xn):
    """n, rounded up to a multiple of _CH if below _SHORT and the rounded copy, which reads
    up to ``end + _CH - 1`` (exclusive, with end the exact copy's end), stays in x (xn)."""
    if n >= U(_SHORT) or end + U(_CH - 1) > xn:
        return n
    return (n + U(_CH - 1)) // U(_CH) * U(_CH)


@njit(cache=True, fastmath=_FM)
def _fill(x, xb, h, w, ws, wb, rowdst, colsrc, coldst, colcnt, sw):
    """Copy input plane ``x[xb:xb + h*w]`` into the phase planes at ``ws[wb:]``.

    ``rowdst[y, px]`` is the offset of the phase row that input row y feeds in column
    phase px (-1: no tap reads it); input column colsrc[px] + t*sw goes to column
    coldst[px] + t of it, for t < colcnt[px].  Tables come from `_geometry`: no division
    here, it costs more than the copy on 7x7 planes.
    """
    # Rows shorter than _SHORT are copied to a multiple of _CH elements: the extra ones
    # spill into the phase's next row (copied later) or its padding, zeroed again at once,
    # and the loop never runs its scalar remainder (the fill of 14x14 planes took 20 % less
    # time, of 56x56 planes at stride 2, rows of 28, 14 % less; but rows of 56 at stride 1
    # took 30 % more: rows from _SHORT on are copied exactly).
    # The phase stride leaves room for the last row's spill (`_planar_plan`).
    xn = U(x.shape[0])
    for y in range(h):
        src = U(xb + y * w)
        if sw == 1:
            if rowdst[y, 0] >= 0:
                dst = U(wb + rowdst[y, 0] + coldst[0])
                nw = U(w)
                nr = _rounded(nw, src + nw, xn)
                for t in range(nr):
                    ws[dst + t] = x[src + t]
                for t in range(nw, nr):
                    ws[dst + t] = 0
        elif sw == 2 and rowdst[y, 0] >= 0 and rowdst[y, 1] >= 0:
            # both column phases from one pass over the row: LLVM turns the pair of
            # stride-2 loads into vector loads and permutes
            pe = 0 if colsrc[0] == 0 else 1  # phase of the even input columns
            d0 = U(wb + rowdst[y, pe] + coldst[pe])
            d1 = U(wb + rowdst[y, 1 - pe] + coldst[1 - pe])
            n2 = U(w // 2)
            nr = _rounded(n2, src + U(2) * n2 + U(15), xn)
            for t in range(nr):
                ws[d0 + t] = x[src + U(2) * t]
                ws[d1 + t] = x[src + U(2) * t + U(1)]
            for t in range(n2, nr):
                ws[d0 + t] = 0
                ws[d1 + t] = 0
            if w % 2:
                ws[d0 + n2] = x[src + U(w - 1)]
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
            v = ((w0 * ws[a0 + q] + w1 * ws[a1 + q] + w2 * ws[a2 + q])
                 + (w3 * ws[a3 + q] + w4 * ws[a4 + q] + w5 * ws[a5 + q])
                 + (w6 * ws[a6 + q] + w7 * ws[a7 + q] + w8 * ws[a8 + q]))
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


@njit(cache=True, fastmath=_FM)
def _taps_pairs(ws, wt, tb, wb, wq, oh, acc, ab):
    """3x3, stride 1, dilation 1: output rows oy and oy+1 together, from input rows oy..oy+3.

    Same sums as `_taps` (same order), with 12 loads for two output vectors instead of 18:
    the taps' loads straddle cache lines (offsets +1, +2) and bound that loop.  Each row
    pair computes whole _CH chunks of flat outputs ``[oy*wq, oy*wq + ceil(wq/_CH)*_CH)``:
    the overhang lands on the next row's flat outputs with the very values that row gets,
    so no tail loop.  An odd oh computes one row past the plane (room in the workspaces,
    see `_planar_plan`).
    """
    w0 = wt[tb]; w1 = wt[tb + 1]; w2 = wt[tb + 2]  # noqa: E702
    w3 = wt[tb + 3]; w4 = wt[tb + 4]; w5 = wt[tb + 5]  # noqa: E702
    w6 = wt[tb + 6]; w7 = wt[tb + 7]; w8 = wt[tb + 8]  # noqa: E702
    e = U(_CH)
    uq = U(wq)
    nr = (uq + e - U(1)) // e * e
    for oy in range(0, oh, 2):
        r0 = U(wb + oy * wq); r1 = r0 + uq; r2 = r1 + uq; r3 = r2 + uq  # noqa: E702
        o0 = U(ab + oy * wq); o1 = o0 + uq  # noqa: E702
        for c0 in range(U(0), nr, e):
            for v in range(e):
                q = c0 + v
                x00 = ws[r0 + q]; x01 = ws[r0 + q + U(1)]; x02 = ws[r0 + q + U(2)]  # noqa: E702
                x10 = ws[r1 + q]; x11 = ws[r1 + q + U(1)]; x12 = ws[r1 + q + U(2)]  # noqa: E702
                x20 = ws[r2 + q]; x21 = ws[r2 + q + U(1)]; x22 = ws[r2 + q + U(2)]  # noqa: E702
                x30 = ws[r3 + q]; x31 = ws[r3 + q + U(1)]; x32 = ws[r3 + q + U(2)]  # noqa: E702
                acc[o0 + q] = ((w0 * x00 + w1 * x01 + w2 * x02) + (w3 * x10 + w4 * x11 + w5 * x12)
                               + (w6 * x20 + w7 * x21 + w8 * x22))
                acc[o1 + q] = ((w0 * x10 + w1 * x11 + w2 * x12) + (w3 * x20 + w4 * x21 + w5 * x22)
                               + (w6 * x30 + w7 * x31 + w8 * x32))


@njit(parallel=True, cache=True, fastmath=_FM)
def _planar(x, out, wt, c, h, w, m, oh, ow, wq, L, sw, rowdst, colsrc, coldst, colcnt,
            toff, chunks, pairs, ws, wsize, acc, asize):
    """All planes: x (n, c, h, w), out (n, c*m, oh, ow) and wt (c*m, r, s), all flattened.

    ws / acc hold one phase workspace (wsize) / accumulator (asize) per thread; pairs:
    3x3 stride 1 dilation 1, computed by `_taps_pairs`.
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
            if pairs:
                _taps_pairs(ws, wt, tb, wb, wq, oh, acc, ab)
            for q0 in range(0, 0 if pairs else L, _LB):
                nq = min(_LB, L - q0)
                for ci in range(chunks.shape[0] - 1):
                    t0 = chunks[ci]
                    _taps(ws, wt, tb, toff, wb, t0, chunks[ci + 1] - t0, acc, ab, q0, nq,
                          ci == 0)
            ob = U(o * oh * ow)
            for oy in range(U(oh)):
                for ox in range(U(ow)):
                    out[ob + oy * U(ow) + ox] = acc[U(ab) + oy * U(wq) + ox]


# ------------------------------------- 3x3 padding 1, stride 1 or 2 (MobileNet's layers)


# Compile-time lengths (see `convbench_kernels.cpu.target.token`): tile rows and load strides.
_ONE, _TWO, _THREE = (0,), (0, 0), (0, 0, 0)


@njit(cache=True, fastmath=_FM)
def _strip3(x, xb, h, w, wt, tb, c0, out, ob, vecs, lanes):
    """Output columns ``c0 <= col < c0 + cols`` (cols: ``len(vecs)`` vectors) of a 3x3,
    stride-1, padding-1 plane: input ``x[xb:xb + h*w]``, weights ``wt[tb:tb + 9]``, output
    ``out[ob:ob + h*w]``.

    Rolling rows: the three rows of the (3, cols) tile hold output rows y+1, y and y-1, and
    input row y, read once (three shifted loads a vector, `fma_tile_masked`), goes into
    all three with the matching filter row; row y-1 is then complete, is stored, and the
    rows move down.  Nine FMAs for three loads a vector: the loads no longer bound it.
    The padding is the loads' masked-off elements (columns -1 and w of a row), so the plane
    is read in place: no copy, no workspace.  Each output is one chain of nine FMAs in the
    filter's row-major order.
    """
    acc = stack_tile(out, _THREE, vecs, lanes)
    cols = acc.shape[1]
    for r in range(3):
        for j in range(cols):
            acc[r, j] = 0
    for y in range(h + 1):
        if y < h:
            base = xb + y * w + c0 - 1
            for j in range(3):
                fma_tile_masked(acc, x, base + j, 1 - c0 - j, w + 1 - c0 - j, wt, tb + j, 3,
                                _THREE, vecs, lanes)
        if y > 0:
            _store_row(out, ob + (y - 1) * w + c0, w - c0, acc, 2, vecs, lanes)
        for j in range(cols):
            acc[2, j] = acc[1, j]
            acc[1, j] = acc[0, j]
            acc[0, j] = 0


@njit(cache=True, fastmath=_FM)
def _store_row(out, o, left, acc, row, vecs, lanes):
    """Row ``row`` of a strip's tile to ``out[o:o + min(cols, left)]``: whole vectors by
    plain stores, the one across the row's end by a masked store."""
    vl = len(lanes)
    cols = len(vecs) * vl
    for v in range(len(vecs)):  # unrolled: constant offsets into acc
        if left - v * vl >= vl:
            copy_lanes(out, o + v * vl, acc, row * cols + v * vl, False, lanes)
        else:
            store_lanes(out, o + v * vl, acc, row * cols + v * vl, 0, left - v * vl, lanes)


@njit(cache=True, fastmath=_FM)
def _strip3s2(x, xb, h, w, wt, tb, c0, out, ob, oh, ow, vecs, lanes):
    """`_strip3` at stride 2: output columns ``c0 <= ox < c0 + cols`` of a 3x3, stride-2
    plane with top and left padding 1 (input ``x[xb:xb + h*w]``, output ``out[ob:ob +
    oh*ow]``; rows and columns past the input read as zeros, whatever the other padding).

    Output row oy reads input rows 2oy - 1, 2oy and 2oy + 1, and columns 2ox - 1 .. 2ox +
    1: each tap column is every other input element (`fma_taps3_s2`: a filter row's three
    from four loads and three shuffles a vector).  The tile's two rows hold output rows oy and
    oy + 1: input row 2oy goes into the first, row 2oy + 1 into both (filter rows 2 and 0),
    so each input row is read once.
    """
    acc = stack_tile(out, _TWO, vecs, lanes)
    cols = acc.shape[1]
    for r in range(2):
        for j in range(cols):
            acc[r, j] = 0
    for oy in range(oh):
        for i in range(1, 3):
            y = 2 * oy + i - 1
            if y < h:
                base = xb + y * w + 2 * c0 - 1
                if i == 1:  # filter row 1 into output row oy
                    fma_taps3_s2(acc, x, base, 1 - 2 * c0, w + 1 - 2 * c0, wt, tb + 3, 0, _ONE,
                                 vecs, lanes)
                else:  # filter row 2 into output row oy, row 0 into oy + 1
                    fma_taps3_s2(acc, x, base, 1 - 2 * c0, w + 1 - 2 * c0, wt, tb + 6, -6, _TWO,
                                 vecs, lanes)
        _store_row(out, ob + oy * ow + c0, ow - c0, acc, 0, vecs, lanes)
        for j in range(cols):
            acc[0, j] = acc[1, j]
            acc[1, j] = 0


@njit(parallel=True, cache=True, fastmath=_FM)
def _rows3(x, out, wt, c, h, w, m, oh, ow, stride, wide, narrow, lanes):
    """3x3 with top and left padding 1 (`_rows3_fits`), stride 1 or 2: x (n, c, h, w), out
    (n, c*m, oh, ow) and wt (c*m, 3, 3), all flattened; ``prange`` over the input planes.

    Each output row in column strips (`_strip3`, `_strip3s2`) of ``len(wide)`` vectors
    while as many are left, then of one (``narrow``): no strip runs past the row's last
    vector.  Two widths only: a third (half the widest) ran 5-10 % faster on MobileNet's
    rows of 112 and 56 but doubled the kernel's compilation.  ``lanes`` is a token of the
    vector width.
    """
    n = x.shape[0] // (c * h * w)
    vl = len(lanes)
    cw = len(wide) * vl
    wide_end = (ow + vl - 1) // vl // len(wide) * cw
    for p in prange(n * c):
        for o in range(p * m, (p + 1) * m):
            tb = (o % (c * m)) * 9
            for c0 in range(0, wide_end, cw):
                if stride == 1:
                    _strip3(x, p * h * w, h, w, wt, tb, c0, out, o * oh * ow, wide, lanes)
                else:
                    _strip3s2(x, p * h * w, h, w, wt, tb, c0, out, o * oh * ow, oh, ow, wide,
                              lanes)
            for c0 in range(wide_end, ow, vl):
                if stride == 1:
                    _strip3(x, p * h * w, h, w, wt, tb, c0, out, o * oh * ow, narrow, lanes)
                else:
                    _strip3s2(x, p * h * w, h, w, wt, tb, c0, out, o * oh * ow, oh, ow,
                              narrow, lanes)


def _rows3_fits(r, s, sh, sw, dh, dw, pads):
    """The problems `_rows3` computes: 3x3, undilated, stride 1 with padding 1 on every side
    (its output plane the input's size), or stride 2 with top and left padding 1 and any
    bottom and right padding (rows and columns past the plane are never loaded)."""
    pt, pb, pl, pr = pads
    return (r == s == 3 and dh == dw == 1 and pt == pl == 1
            and (sh == sw == 2 or (sh == sw == 1 and pb == pr == 1)))


def _rows3_plan(c, h, wd, m, oh, ow, stride, strip_vecs, lanes):
    """`_rows3`'s arguments after the weights: the shape and its strips' tokens."""
    return (c, h, wd, m, oh, ow, stride, token(strip_vecs), token(1), token(lanes)), 0, 0


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
                    s = ((wc[k0 + v] * ws[a0 + d + v] + wc[k1 + v] * ws[a1 + d + v]
                          + wc[k2 + v] * ws[a2 + d + v])
                         + (wc[k3 + v] * ws[a3 + d + v] + wc[k4 + v] * ws[a4 + d + v]
                            + wc[k5 + v] * ws[a5 + d + v])
                         + (wc[k6 + v] * ws[a6 + d + v] + wc[k7 + v] * ws[a7 + d + v]
                            + wc[k8 + v] * ws[a8 + d + v]))
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
def _lanes(x, out, wt, c, h, w, m, oh, ow, sh, sw, wp, pt, pl, toff, chunks, ws, wsize,
           o16, osize, lsrc):
    """All planes, _CB output channels at a time: x (n, c, h, w), out (n, c*m, oh, ow) and
    wt (c*m, r, s), all flattened.

    ws / o16 / lsrc (32 per thread) are per-thread input, output and lane-source
    workspaces; the end of a thread's ws takes the block's weights lane-minor, gathered
    here rather than reordered in `prepare` (on 1024 channels, gathering here takes about
    half the time of that reorder, and `convbench.conv2d` pays both on every call).
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
        wb = tid * wsize
        ob = tid * osize
        cb = wb + wsize - (ntap + 1) * _CB
        for v in range(_CB):  # lanes past the last channel repeat it; never stored
            o = min(o0 + v, k - 1)
            lsrc[lb + v] = (b * c + o // m) * h * w
            for t in range(ntap):
                ws[U(cb + t * _CB + v)] = wt[U(o * ntap + t)]
        _lanes_fill(x, lsrc, lb, h, w, ws, wb, wp, pt, pl)
        for ci in range(chunks.shape[0] - 1):
            t0 = chunks[ci]
            _lanes_taps(ws, wb, ws, cb, toff, t0, chunks[ci + 1] - t0,
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


def _planar_plan(c, h, wd, m, r, s, sh, sw, dh, dw, pads, oh, ow):
    """`_planar`'s tables and per-thread sizes: functions of the shape only (see `_plan`)."""
    pt, _, pl, _ = pads
    # a phase must hold every input pixel and every pixel a valid output reads
    hq = max(oh + ((r - 1) * dh) // sh, (h + pt + sh - 1) // sh)
    wq = max(ow + ((s - 1) * dw) // sw, (wd + pl + sw - 1) // sw)
    L = ((oh - 1) * wq + ow + _VB - 1) // _VB * _VB  # flat outputs, padded
    ps = hq * wq + _CH  # phase stride: room for the spill of `_fill`'s last row
    toff = np.empty(r * s, np.int64)
    used = np.zeros(sh * sw, np.bool_)
    for i in range(r):
        for j in range(s):
            phase = ((i * dh) % sh) * sw + (j * dw) % sw
            toff[i * s + j] = phase * ps + (i * dh) // sh * wq + (j * dw) // sw
            used[phase] = True
    rowdst = np.full((h, sw), -1, np.int64)
    for y in range(h):
        py, yy = (y + pt) % sh, (y + pt) // sh
        for px in range(sw):
            if used[py * sw + px]:
                rowdst[y, px] = (py * sw + px) * ps + yy * wq
    colsrc = np.array([(px - pl) % sw for px in range(sw)], np.int64)
    coldst = (colsrc + pl) // sw
    colcnt = np.maximum(0, (wd - colsrc + sw - 1) // sw)
    # the flat loop reads up to _VB past the last phase; the 16-element gaps keep the
    # threads' regions on separate cache lines whatever the base alignment (false
    # sharing of the accumulators tripled the 2-thread time on 7x7 planes)
    pairs = r == s == 3 and sh == sw == 1 and dh == dw == 1
    # _taps_pairs writes flat outputs up to oh*wq + nr (odd oh: one row past the plane)
    # and reads up to nr + 2 past the phase; the general passes write up to L and read up
    # to _VB past the phase
    nr = (wq + _CH - 1) // _CH * _CH if pairs else 0
    wsize = (sh * sw * ps + max(_VB, nr + 2) + 15) // 16 * 16 + 16
    asize = (max(L, oh * wq + nr) + 15) // 16 * 16 + 16
    tables = (c, h, wd, m, oh, ow, wq, L, sw, rowdst, colsrc, coldst, colcnt, toff,
              _chunks(r * s), pairs)
    return tables, wsize, asize


def _lanes_plan(c, h, wd, m, r, s, sh, sw, dh, dw, pads, oh, ow):
    """`_lanes`' tables and per-thread sizes: functions of the shape only (see `_plan`)."""
    pt, pb, pl, pr = pads
    hp, wp = h + pt + pb, wd + pl + pr
    toff = np.array([(i * dh * wp + j * dw) * _CB for i in range(r) for j in range(s)],
                    np.int64)
    # padded block, then the block's weights, then _CB elements that keep the threads'
    # regions on separate cache lines (see _planar_plan)
    wsize = (hp * wp + r * s + 1) * _CB
    tables = (c, h, wd, m, oh, ow, sh, sw, wp, pt, pl, toff, _chunks(r * s))
    return tables, wsize, oh * ow * _CB + 16


@functools.lru_cache(maxsize=256)
def _plan(c, h, wd, m, r, s, sh, sw, dh, dw, pads, oh, ow, limits, lanes):
    """Strategy, index tables and per-thread workspace sizes of a layer shape.

    Cached: they depend on the shape alone, and building them in Python cost as much as
    the computation on MobileNet's layers (`convbench.conv2d` prepares on every
    call).  The tables are only read.

    Returns
    -------
    (kernel, tables, wsize, asize)
        `_rows3` where it applies (`_rows3_fits`), else channel lanes for small planes, where
        the per-plane and per-row overheads dominate, else planes; ws and its accumulator
        or output block take wsize and asize elements per thread.  ``limits`` is
        `defaults`' values, in its order, as a tuple; ``lanes`` the elements of a vector.
    """
    lanes_max_pixels, lanes_max_input, pairs_min_ow, strip_vecs = limits
    args = (c, h, wd, m, r, s, sh, sw, dh, dw, pads, oh, ow)
    if _rows3_fits(r, s, sh, sw, dh, dw, pads):
        return (_rows3, *_rows3_plan(c, h, wd, m, oh, ow, sh, strip_vecs, lanes))
    pairs = r == s == 3 and sh == sw == 1 and dh == dw == 1 and ow >= pairs_min_ow
    if oh * ow <= lanes_max_pixels and h * wd <= lanes_max_input and not pairs:
        return (_lanes, *_lanes_plan(*args))
    return (_planar, *_planar_plan(*args))


def _strategy(w, spec, m, p):
    """``(kernel, args)``: ``kernel(x, out, *args)`` on flat arrays computes the layer.

    args hold the tables, the weights and the workspaces, allocated here: a workspace is
    never shared by two prepared layers.  The weights are not copied (the kernel reads
    ``w`` when called): a copy would cost as much as the rest of `prepare`.
    """
    kernel, tables, wsize, asize = _plan(spec.c, spec.h, spec.w, m, spec.r, spec.s,
                                         spec.sh, spec.sw, spec.dh, spec.dw, tuple(spec.pads),
                                         spec.oh, spec.ow, tuple(p.values()),
                                         current().lanes(spec.itemsize))
    wt = np.asarray(w, dtype=spec.dtype).reshape(-1)  # (c*m*r*s,), a view
    if kernel is _rows3:  # no workspace
        return kernel, (wt, *tables)
    nt = numba.config.NUMBA_NUM_THREADS
    ws = np.zeros(nt * wsize, spec.dtype)  # the zero padding is never written again
    acc = np.empty(nt * asize, spec.dtype)
    if kernel is _lanes:
        return kernel, (wt, *tables, ws, wsize, acc, asize, np.empty(nt * 32, np.int64))
    return kernel, (wt, *tables, ws, wsize, acc, asize)


def workspace(spec):
    """Bytes `prepare` and one call allocate (an upper bound): per-thread padded planes or
    16-channel blocks (with the block's weights), their accumulators, and a weight-sized
    margin (the weights themselves are not copied)."""
    pt, pb, pl, pr = spec.pads
    hp, wp = spec.h + pt + pb + spec.sh, spec.w + pl + pr + spec.sw
    per_thread = _CB * (hp * wp + spec.oh * spec.ow) + 2 * _VB + 64
    weights = (spec.k + _CB) * spec.r * spec.s
    return spec.itemsize * (numba.config.NUMBA_NUM_THREADS * per_thread + weights)


def workspace_separable(spec):
    """`workspace` of the depthwise stage plus the intermediate and the pointwise weights."""
    return workspace(spec) + spec.itemsize * (spec.n * spec.c * spec.oh * spec.ow
                                              + spec.k * spec.c)



def prepare(w, spec, params=None):
    """Index tables and workspaces for depthwise ``spec``; returns ``compute(x, out)``.

    Parameters
    ----------
    w : ndarray (k, 1, r, s)
        k = c*m; output channel o reads input channel o // m.  Read by every call, not
        copied: it must not change while the layer is in use.
    spec : ConvSpec-like
        With groups == c.
    params : dict, optional
        The strategies' hand-over points and `_rows3`'s strip width (`defaults`);
        default: the installed or target-derived ones.
    """
    reason = supports(spec)
    if reason:
        raise ValueError(reason)
    p = _params(params)
    kernel, args = _strategy(w, spec, spec.k // spec.c, p)

    def compute(x, out):
        kernel(x.reshape(-1), out.reshape(-1), *args)

    compute.params = p
    return compute


# ---------------------------------------------------------------------- separable



@njit(parallel=True, cache=True)
def _pointwise(wp, mid, out, kblocks):
    """out[b] (k, oh*ow) = wp (k, c*m) @ mid[b] (c*m, oh*ow), as ``kblocks`` row blocks per
    image, one single-threaded BLAS GEMM per Numba thread (see `single_threaded_blas`)."""
    k = wp.shape[0]
    for j in prange(mid.shape[0] * kblocks):
        b, kb = j // kblocks, j % kblocks
        k0, k1 = kb * k // kblocks, (kb + 1) * k // kblocks
        np.dot(wp[k0:k1], mid[b], out[b, k0:k1])



def prepare_separable(ws, spec):
    """Depthwise r x s then pointwise 1x1: the separable replacement of ``spec``.

    Parameters
    ----------
    ws : (w_depthwise, w_pointwise)
        Shapes (c*m, 1, r, s) and (k, c*m, 1, 1).
    spec : ConvSpec-like
        The standard convolution c -> k that the pair replaces: its r, s, stride, padding
        and dilation are the depthwise stage's; groups == 1.

    The channel multiplier m is w_depthwise.shape[0] // c.  With ``spec.direction ==
    "bwd_d"``: the gradient of the pair's input (`_prepare_separable_input`).

    Returns
    -------
    compute(x, out)
        x (n, c, h, w), out (n, k, oh, ow).  The (n, c*m, oh, ow) intermediate is allocated here.

    Notes
    -----
    Calling OpenBLAS' own threads right after the depthwise ``prange`` made a MobileNet
    block take about 20 times as long (Numba's OpenMP workers spin and starve OpenBLAS'
    worker), so the pointwise GEMM runs as row blocks on Numba's threads, BLAS on one
    thread each (`convbench_kernels.cpu.common.single_threaded_blas`).
    """
    if spec.direction == "bwd_d":
        return _prepare_separable_input(ws, spec)
    w_dw, w_pw, m = separable_weights(ws, spec)
    n, c, k = spec.n, spec.c, spec.k
    p = _params()
    kernel, args = _strategy(w_dw, spec, m, p)
    wp = np.ascontiguousarray(np.asarray(w_pw, dtype=spec.dtype).reshape(k, c * m))
    mid = np.empty((n, c * m, spec.oh * spec.ow), dtype=spec.dtype)

    kblocks = min(numba.get_num_threads(), k)

    def depthwise_stage(x, out):
        kernel(x.reshape(-1), mid.reshape(-1), *args)

    def pointwise_stage(x, out):
        with single_threaded_blas():
            _pointwise(wp, mid, out.reshape(n, k, spec.oh * spec.ow), kblocks)

    compute = with_phases(("depthwise", depthwise_stage), ("pointwise", pointwise_stage))
    compute.params = p
    return compute



def _prepare_separable_input(ws, spec):
    """``compute(dy, dx)``: the gradient of the separable pair's input, its stages in reverse:
    the pointwise stage's (``dmid[b] = wp.T @ dy[b]``, the forward pass's GEMM kernel with the
    transposed weights), then the depthwise stage's (its stride phases as forward depthwise
    problems, `convbench_kernels.directions`; with a channel multiplier above 1 those are no
    longer depthwise, and the direct kernel takes them)."""
    from convbench_kernels import directions
    from convbench_kernels.cpu import direct

    w_dw, w_pw, m = separable_weights(ws, spec)
    n, c, k = spec.n, spec.c, spec.k
    wt = np.ascontiguousarray(np.asarray(w_pw, dtype=spec.dtype).reshape(k, c * m).T)
    dmid = np.empty((n, c * m, spec.oh * spec.ow), dtype=spec.dtype)
    stage = spec.with_(k=c * m, groups=c, direction="bwd_d")
    depthwise_grad = directions.preparing(prepare if m == 1 else direct.prepare)(w_dw, stage)
    kblocks = min(numba.get_num_threads(), c * m)

    def pointwise_stage(dy, dx):
        with single_threaded_blas():
            _pointwise(wt, dy.reshape(n, k, spec.oh * spec.ow), dmid, kblocks)

    def depthwise_stage(dy, dx):
        depthwise_grad(dmid.reshape(n, c * m, spec.oh, spec.ow), dx)

    return with_phases(("pointwise", pointwise_stage), ("depthwise", depthwise_stage))
