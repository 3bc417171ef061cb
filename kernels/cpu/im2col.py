"""im2col + GEMM convolution: unfold the input into a column matrix, then one BLAS GEMM per group.

Layout
------
For image ``b`` the column matrix holds, in row ``(ch, i, j)`` (``ch`` over all ``c`` input
channels, ``i < r``, ``j < s``) and column ``p = y*ow + xo``, the input pixel
``x[b, ch, y*sh + i*dh - pt, xo*sw + j*dw - pl]`` (zero where that falls in the padding), so
group ``g`` owns the contiguous row slab ``[g*cg*r*s, (g+1)*cg*r*s)``.  The weights, reshaped
once to ``(groups, kg, cg*r*s)``, multiply that slab: ``out[b, g*kg:(g+1)*kg]`` viewed as
``(kg, oh*ow)`` is ``wmat[g] @ col_g``, and the GEMM writes straight into it.  Padding is
handled while packing (no padded copy of the input).  1x1 stride-1 unpadded layers skip the
packing: the input image ``(c, h*w)`` already is the column matrix.

When the column matrix of a whole image would exceed ``COL_BUDGET`` bytes (large filters:
15x15 32->32 @64 needs 7200 x 4096 floats, 118 MB) it is packed and multiplied a block of
output rows at a time; each block's GEMM lands in a small workspace copied into ``out``.

Threads: the GEMM runs on OpenBLAS' own pool (2 threads); the packing runs serially on the
calling thread, deliberately without ``prange``.  Measured here (numba's OpenMP layer, libgomp
defaults): after a ``prange`` region the idle OpenMP worker spins for milliseconds and takes
a core from the OpenBLAS worker that starts next (and vice versa), so a parallel pack followed
by the GEMM cost ~8 ms per image where the two phases alone take 0.57 + 0.7 ms (3x3 64->64
@56).  The serial pack writes ~35 GB/s (0.2 ms for that layer), well below the GEMM time.
On this VM a pack that directly follows a GEMM over the same buffer sometimes runs 3-4x
slower than alone (0.7 vs 0.2 ms, with BLAS on 2 threads only): the OpenBLAS worker core has
read half of the buffer and the rewrite pays cross-core invalidations; it comes and goes.

Supported problems
------------------
Every valid problem: any filter, stride, asymmetric padding, dilation, groups, batch,
float32 and float64.  ``supports`` always returns None.

Error
-----
The GEMM accumulates ``cg*r*s`` products in the input dtype; against the float64 oracle
max|out - ref| / max|ref| is ~1e-6 in float32 and ~1e-15 in float64.

Reference
---------
K. Chellapilla, S. Puri, P. Simard, "High Performance Convolutional Neural Networks for
Document Processing", IWFHR 2006 (unfolding the convolution into a matrix product).
"""

import numpy as np
from numba import njit, uint64

# Bytes of column matrix packed at once.  Zen 5, 32->32 @64 'same', whole image vs budgets of
# 0.5-16 MB: 9x9 6.4 ms unblocked, 4.7-4.8 ms at 4-16 MB; 15x15 18.7 ms unblocked, 13.9 ms at
# 8 MB, 15.7 ms at 4 MB, 16.6 ms at 16 MB.  Every ResNet-50 layer (<= 7 MB) stays unblocked.
COL_BUDGET = 8 << 20


def supports(spec):
    """im2col + GEMM computes every valid problem.

    Parameters
    ----------
    spec : ConvSpec-like
        The problem.

    Returns
    -------
    None
    """
    return None


@njit(cache=True)
def _pack(x, b, y0, y1, r, s, sh, sw, dh, dw, pt, pl, ow, col):
    """Fill ``col`` (c*r*s, (y1-y0)*ow) with the patches of output rows [y0, y1) of image ``b``.

    Parameters
    ----------
    x : ndarray (n, c, h, w)
        The input.
    b, y0, y1 : int
        Image and range of output rows.
    r, s, sh, sw, dh, dw, pt, pl, ow : int
        Filter size, stride, dilation, top and left padding, output width.
    col : ndarray (c*r*s, (y1-y0)*ow)
        Written completely, padding taps as zeros.
    """
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    rs = r * s
    for row in range(c * rs):
        ch = row // rs
        i = (row // s) % r
        j = row % s
        ix0 = j * dw - pl  # input column of output column 0
        # output columns whose input column lies inside [0, w): x_lo <= xo < x_hi
        x_lo = 0 if ix0 >= 0 else min((-ix0 + sw - 1) // sw, ow)
        x_hi = max(min((w - 1 - ix0) // sw + 1, ow), x_lo) if w - 1 - ix0 >= 0 else x_lo
        crow = col[row]
        xc = x[b, ch]
        # Indices are cast to uint64: numba then skips its negative-index wraparound, whose
        # per-element select turned the copies into scatters (measured 6 GB/s -> 35 GB/s).
        for y in range(y0, y1):
            iy = y * sh + i * dh - pt
            base = (y - y0) * ow
            if iy < 0 or iy >= h:
                for xo in range(ow):
                    crow[uint64(base + xo)] = 0
                continue
            xr = xc[iy]
            for xo in range(x_lo):
                crow[uint64(base + xo)] = 0
            if sw == 1:
                for xo in range(x_lo, x_hi):
                    crow[uint64(base + xo)] = xr[uint64(xo + ix0)]
            else:
                for xo in range(x_lo, x_hi):
                    crow[uint64(base + xo)] = xr[uint64(xo * sw + ix0)]
            for xo in range(x_hi, ow):
                crow[uint64(base + xo)] = 0


@njit(cache=True)
def _scatter(tmp, out, b, k0, p0):
    """Copy the block ``tmp`` (kg, P) into ``out`` (n, k, oh*ow) at [b, k0:k0+kg, p0:p0+P]."""
    kg, npix = tmp.shape
    for kk in range(kg):
        src = tmp[kk]
        dst = out[b, k0 + kk]
        for p in range(npix):
            dst[uint64(p0 + p)] = src[uint64(p)]


@njit(cache=True)
def _run(x, wmat, r, s, sh, sw, dh, dw, pt, pl, oh, ow, rows_blk, col_buf, tmp_buf, out):
    """Pack and multiply every image and block of output rows; see the module docstring.

    ``out`` is viewed as (n, k, oh*ow); ``col_buf`` and ``tmp_buf`` are flat workspaces holding
    at least c*r*s*rows_blk*ow and kg*rows_blk*ow elements (``tmp_buf`` used only when
    blocking).
    """
    n, c = x.shape[0], x.shape[1]
    groups, kg, kcol = wmat.shape
    npix = oh * ow
    for b in range(n):
        for y0 in range(0, oh, rows_blk):
            y1 = min(y0 + rows_blk, oh)
            p0 = y0 * ow
            pb = (y1 - y0) * ow
            col = col_buf[: c * r * s * pb].reshape(c * r * s, pb)
            _pack(x, b, y0, y1, r, s, sh, sw, dh, dw, pt, pl, ow, col)
            for g in range(groups):
                col_g = col[g * kcol:(g + 1) * kcol]  # (cg*r*s, pb)
                if pb == npix:
                    np.dot(wmat[g], col_g, out[b, g * kg:(g + 1) * kg])
                else:
                    tmp = tmp_buf[: kg * pb].reshape(kg, pb)
                    np.dot(wmat[g], col_g, tmp)
                    _scatter(tmp, out, b, g * kg, p0)


@njit(cache=True)
def _run_1x1(x, wmat, out):
    """1x1, stride 1, no padding: ``out[b, group] = wmat[g] @ x[b, group]`` viewed (cg, h*w)."""
    n = x.shape[0]
    groups, kg, cg = wmat.shape
    for b in range(n):
        for g in range(groups):
            np.dot(wmat[g], x[b, g * cg:(g + 1) * cg], out[b, g * kg:(g + 1) * kg])


def workspace(spec):
    """Bytes `prepare` and one call allocate: the GEMM-ready weights and the column buffer
    (one image, or blocks of rows within ``COL_BUDGET``)."""
    b = spec.itemsize
    col = spec.c * spec.r * spec.s * spec.oh * spec.ow * b
    if col > COL_BUDGET:  # blocked: a budget of rows plus the GEMM's output block
        row = spec.c * spec.r * spec.s * spec.ow * b
        col = max(COL_BUDGET // row, 1) * (row + spec.kg * spec.ow * b)
    return spec.params * b + col


def prepare(w, spec):
    """Reshape the weights and allocate the column workspace; return ``compute(x, out)``.

    Parameters
    ----------
    w : ndarray (k, cg, r, s)
        C-contiguous weights of dtype ``spec.dtype``.
    spec : ConvSpec-like
        The problem.

    Returns
    -------
    compute : callable
        ``compute(x, out)`` writes the convolution of ``x`` (n, c, h, w) into ``out``
        (n, k, oh, ow).
    """
    dtype = np.dtype(spec.dtype)
    g, kg, cg = spec.groups, spec.kg, spec.cg
    r, s, oh, ow = spec.r, spec.s, spec.oh, spec.ow
    pt, _, pl, _ = spec.pads
    wmat = np.array(w, dtype=dtype, order="C").reshape(g, kg, cg * r * s)  # (groups, kg, cg*r*s)

    if r == s == 1 and spec.sh == spec.sw == 1 and not any(spec.pads):

        def compute(x, out):
            _run_1x1(x.reshape(spec.n, spec.c, spec.h * spec.w), wmat,
                     out.reshape(spec.n, spec.k, oh * ow))

        return compute

    row_bytes = spec.c * r * s * ow * dtype.itemsize  # column matrix bytes per output row
    rows_blk = oh if row_bytes * oh <= COL_BUDGET else max(1, COL_BUDGET // row_bytes)
    col_buf = np.empty(spec.c * r * s * rows_blk * ow, dtype=dtype)
    tmp_buf = np.empty(kg * rows_blk * ow if rows_blk < oh else 1, dtype=dtype)
    args = (r, s, spec.sh, spec.sw, spec.dh, spec.dw, pt, pl, oh, ow, rows_blk, col_buf, tmp_buf)

    def compute(x, out):
        _run(x, wmat, *args, out.reshape(spec.n, spec.k, oh * ow))

    return compute
