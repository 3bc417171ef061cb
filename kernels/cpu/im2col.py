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
packing: the input image ``(c, h*w)`` already is the column matrix.  The weights are read in
place (a view), and the column and output blocks come from
`convbench_kernels.cpu.common.pooled_empty`, so that a layer prepared per call
(``convbench.conv2d``) neither copies the weights nor page-faults fresh blocks.

Threads: one pool.  Each Numba thread packs its own block of output rows into its own slice
of the column workspace and multiplies it with single-threaded BLAS GEMMs (one per group) into
its own output block, then copies that into ``out``: packing and GEMM run in parallel with no
hand-over between thread pools.  Measured on 2 cores: letting OpenBLAS' two threads run the
GEMM after a ``prange`` pack took about 6x as long per image (the idle OpenMP worker spins
and takes the core OpenBLAS needs), and a serial pack followed by OpenBLAS' threaded GEMM
took 1.1-2x as long as this way on 3x3 64->64 @56, and over twice as long on 9x9 and 15x15
32->32 @64.  Images too small to share by pixels (under ``small_image`` output pixels a
thread) are packed whole, rows split over the threads, and each GEMM is split by blocks of
output channels instead.  Blocks are sized so that all the
threads' column blocks stay within ``col_budget`` bytes (large filters: 15x15 32->32 @64
needs 7200 x 4096 floats, 118 MB, for a whole image).

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

import numba
import numpy as np
from numba import njit, prange, uint64

from convbench_kernels.contract import every_problem
from convbench_kernels.cpu.common import ZERO, pooled_empty, single_threaded_blas
from convbench_kernels.cpu.target import Target, current, resolve

supports = every_problem  # any filter, stride, padding, dilation, groups, batch


def defaults(target: Target) -> dict:
    """``col_budget``: bytes of column matrix packed at once, four L2 caches (8 MB on a 2 MB
    L2, 4 MB on 1 MB).  Smaller blocks stay in cache between packing and GEMM, larger ones
    make fewer, wider GEMMs: on 32->32 @64 'same' (budgets of 0.5-16 MB against the whole
    image, 1 MB L2) blocking took a quarter off 9x9 at any budget of 4-16 MB, and off 15x15
    at 8 MB (11-16 % at 4 or 16 MB).  Every ResNet-50 layer (<= 7 MB) stays unblocked.

    ``small_image``: output pixels per thread below which an image is not split in pixel
    blocks, but its GEMMs in blocks of output channels: 512 -> 512 @7 (25 pixels a thread)
    took 23-35 % less time split by channels than by pixels; 256 -> 256 @14 (98) ran the
    same either way.
    """
    return {"col_budget": 4 * (target.l2_bytes or 1 << 20), "small_image": 64}


def space(target: Target) -> list[dict]:
    """Budgets of 2 to 16 L2 caches, and the split by channels from 32 to 128 pixels."""
    l2 = target.l2_bytes or 1 << 20
    return [{"col_budget": m * l2, "small_image": s} for m in (2, 4, 8, 16) for s in (32, 64)]


def _params(given=None) -> dict:
    return resolve("im2col", defaults(current()), given)


@njit(parallel=True, cache=True)
def _pack(x, b, y0, y1, r, s, sh, sw, dh, dw, pt, pl, ow, col, chunks):
    """Fill ``col`` (c*r*s, (y1-y0)*ow) with the patches of output rows [y0, y1) of image ``b``,
    its rows split in ``chunks`` parallel ranges.

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
    chunks : int
        Parallel ranges of rows (one per thread).
    """
    rows = col.shape[0]
    for t in prange(chunks):
        _pack_rows(x, b, y0, y1, r, s, sh, sw, dh, dw, pt, pl, ow, col,
                   t * rows // chunks, (t + 1) * rows // chunks, ZERO)


@njit(cache=True)
def _pack_rows(x, b, y0, y1, r, s, sh, sw, dh, dw, pt, pl, ow, col, row0, row1, off):
    """Rows [row0, row1) of `_pack`, written from column ``off`` of ``col`` on."""
    h, w = x.shape[2], x.shape[3]
    rs = r * s
    for row in range(row0, row1):
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
        # per-element select turned the copies into scatters (about 6x slower).
        for y in range(y0, y1):
            iy = y * sh + i * dh - pt
            base = off + (y - y0) * ow
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


@njit(parallel=True, cache=True)
def _gemms(wmat, col, dst, kblocks):
    """``dst[g*kg:(g+1)*kg] = wmat[g] @ col[g*kcol:(g+1)*kcol]`` for every group, each split in
    ``kblocks`` blocks of rows: one single-threaded BLAS GEMM per Numba thread (the caller
    limits BLAS to one thread; see `convbench_kernels.cpu.common.single_threaded_blas`)."""
    groups, kg, kcol = wmat.shape
    for j in prange(groups * kblocks):
        g, kb = j // kblocks, j % kblocks
        k0, k1 = kb * kg // kblocks, (kb + 1) * kg // kblocks
        np.dot(wmat[g, k0:k1], col[g * kcol:(g + 1) * kcol], dst[g * kg + k0:g * kg + k1])


@njit(cache=True, inline="always")
def _block_rows(item, nblk, rows_blk, oh, ow):
    """``(image, first row, end row, pixels)`` of work item ``item``: image ``item // nblk``,
    its block ``item % nblk`` of ``rows_blk`` output rows."""
    b, blk = item // nblk, item % nblk
    y0 = blk * rows_blk
    y1 = min(y0 + rows_blk, oh)
    return b, y0, y1, (y1 - y0) * ow


@njit(parallel=True, cache=True)
def _run(x, wmat, r, s, sh, sw, dh, dw, pt, pl, oh, ow, rows_blk, col_buf, tmp_buf, out):
    """Pack and multiply every (image, block of output rows), one block per thread at a time.

    Each thread owns a slice of ``col_buf`` (c*r*s, rows_blk*ow) and of ``tmp_buf``
    (k, rows_blk*ow): it packs its block, multiplies it by every group's weights with a
    single-threaded BLAS GEMM (the caller limits BLAS to one thread), and copies the result
    into ``out`` (n, k, oh*ow).  The blocks are independent: no thread waits for another
    between packing and multiplying, and a block's columns stay in that core's cache.
    """
    n, c = x.shape[0], x.shape[1]
    groups, kg, kcol = wmat.shape
    k = groups * kg
    nblk = -(-oh // rows_blk)
    items = n * nblk
    threads = col_buf.shape[0]
    for t in prange(threads):
        for item in range(t, items, threads):
            b, y0, y1, pb = _block_rows(item, nblk, rows_blk, oh, ow)
            col = col_buf[t, : c * r * s * pb].reshape(c * r * s, pb)
            tmp = tmp_buf[t, : k * pb].reshape(k, pb)
            _pack_rows(x, b, y0, y1, r, s, sh, sw, dh, dw, pt, pl, ow, col, ZERO, c * r * s,
                       ZERO)
            for g in range(groups):
                np.dot(wmat[g], col[g * kcol:(g + 1) * kcol], tmp[g * kg:(g + 1) * kg])
            _scatter(tmp, out, b, 0, y0 * ow)


@njit(cache=True)
def _run_ksplit(x, wmat, r, s, sh, sw, dh, dw, pt, pl, oh, ow, rows_blk, col_buf, tmp_buf, chunks,
         kblocks, out):
    """Small images: pack each image (its rows split over the threads), then split each
    group's GEMM in ``kblocks`` blocks of output channels, one per thread.

    ``out`` is viewed as (n, k, oh*ow); ``col_buf`` and ``tmp_buf`` are flat workspaces holding
    at least c*r*s*rows_blk*ow and k*rows_blk*ow elements (``tmp_buf`` used only when
    blocking).
    """
    n, c = x.shape[0], x.shape[1]
    k = wmat.shape[0] * wmat.shape[1]
    npix = oh * ow
    for b in range(n):
        for y0 in range(0, oh, rows_blk):
            y1 = min(y0 + rows_blk, oh)
            p0 = y0 * ow
            pb = (y1 - y0) * ow
            col = col_buf[: c * r * s * pb].reshape(c * r * s, pb)
            _pack(x, b, y0, y1, r, s, sh, sw, dh, dw, pt, pl, ow, col, chunks)
            if pb == npix:
                _gemms(wmat, col, out[b], kblocks)
            else:
                tmp = tmp_buf[: k * pb].reshape(k, pb)
                _gemms(wmat, col, tmp, kblocks)
                _scatter(tmp, out, b, 0, p0)


@njit(parallel=True, cache=True)
def _run_1x1(x, wmat, kblocks, out):
    """1x1, stride 1, no padding: ``out[b, group] = wmat[g] @ x[b, group]`` viewed (cg, h*w),
    one single-threaded GEMM per Numba thread for each (image, group, block of ``kblocks``
    of the group's output channels).

    Images are shared before channels: two threads splitting one image's GEMM by output
    channels each pack the whole image into BLAS' panels, so from as many images as threads
    on, each GEMM is a whole image's (``kblocks`` 1).  Measured on 2 cores at batch 8, 256
    -> 64 at 56 x 56: 71 GFLOP/s split by channels, 107 by images."""
    groups, kg, kcol = wmat.shape
    per_image = groups * kblocks
    for j in prange(x.shape[0] * per_image):
        b, g, kb = j // per_image, j % per_image // kblocks, j % kblocks
        k0, k1 = kb * kg // kblocks, (kb + 1) * kg // kblocks
        np.dot(wmat[g, k0:k1], x[b, g * kcol:(g + 1) * kcol], out[b, g * kg + k0:g * kg + k1])


def _blocks(spec, p, threads) -> tuple[str, int, int]:
    """How `prepare` splits the forward pass: ``(split, rows, blocks)``, ``blocks`` column
    (and output) blocks of ``rows`` output rows each.  ``"1x1"``: no columns (a 1x1 stride-1
    unpadded layer reads the input in place); ``"channels"``: one block, the GEMMs split by
    output channels (too few pixels to share); ``"rows"``: a block per thread, each fitting
    its share of ``col_budget`` (a whole image per thread from ``threads`` images on)."""
    if spec.r == spec.s == 1 and spec.sh == spec.sw == 1 and not any(spec.pads):
        return "1x1", 0, 0
    row_bytes = spec.c * spec.r * spec.s * spec.ow * spec.itemsize  # columns of an output row
    budget = p["col_budget"]
    if spec.oh * spec.ow < p["small_image"] * threads:
        rows = spec.oh if row_bytes * spec.oh <= budget else max(1, budget // row_bytes)
        return "channels", rows, 1
    rows = max(1, min(-(-spec.oh // threads) if spec.n < threads else spec.oh,
                      budget // threads // row_bytes))
    return "rows", rows, threads


def workspace(spec, params=None):
    """Bytes `prepare` and one call allocate: its column and output blocks (`_blocks`).  The
    weights are read in place."""
    _, rows, blocks = _blocks(spec, _params(params), numba.get_num_threads())
    return blocks * rows * spec.ow * (spec.c * spec.r * spec.s + spec.k) * spec.itemsize


def prepare(w, spec, params=None):
    """View the weights as matrices and take the column workspace; return ``compute(x, out)``.

    Parameters
    ----------
    w : ndarray (k, cg, r, s)
        C-contiguous weights of dtype ``spec.dtype``.
    spec : ConvSpec-like
        The problem.
    params : dict, optional
        ``col_budget`` and ``small_image`` (`defaults`); default: the installed or
        target-derived ones.

    Returns
    -------
    compute : callable
        ``compute(x, out)`` writes the convolution of ``x`` (n, c, h, w) into ``out``
        (n, k, oh, ow); ``compute.params`` the parameters it runs.  It reads ``w`` in place.
    """
    p = _params(params)
    dtype = np.dtype(spec.dtype)
    g, kg, cg = spec.groups, spec.kg, spec.cg
    r, s, oh, ow = spec.r, spec.s, spec.oh, spec.ow
    pt, _, pl, _ = spec.pads
    # (groups, kg, cg*r*s), a view: the GEMMs read the caller's weights in place
    wmat = np.ascontiguousarray(w, dtype=dtype).reshape(g, kg, cg * r * s)
    threads = numba.get_num_threads()
    kblocks = max(1, min(kg, -(-threads // g)))  # enough GEMMs to give every thread one
    split, rows_blk, _ = _blocks(spec, p, threads)

    if split == "1x1":
        per_image = max(1, min(kg, -(-threads // (g * spec.n))))

        def compute(x, out):
            with single_threaded_blas():
                _run_1x1(x.reshape(spec.n, spec.c, spec.h * spec.w), wmat, per_image,
                         out.reshape(spec.n, spec.k, oh * ow))

        compute.params = p
        return compute

    geometry = (r, s, spec.sh, spec.sw, spec.dh, spec.dw, pt, pl, oh, ow)
    if split == "channels":
        # too few pixels to share: one packed image, its GEMMs split by output channels
        col_buf = pooled_empty(spec.c * r * s * rows_blk * ow, dtype)
        tmp_buf = pooled_empty(spec.k * rows_blk * ow if rows_blk < oh else 1, dtype)
        run, args = _run_ksplit, (*geometry, rows_blk, col_buf, tmp_buf, threads, kblocks)
    else:
        # rows per block: every thread gets work; a thread's block fits its share of the budget
        col_buf = pooled_empty((threads, spec.c * r * s * rows_blk * ow), dtype)
        tmp_buf = pooled_empty((threads, spec.k * rows_blk * ow), dtype)
        run, args = _run, (*geometry, rows_blk, col_buf, tmp_buf)

    def compute(x, out):
        with single_threaded_blas():
            run(x, wmat, *args, out.reshape(spec.n, spec.k, oh * ow))

    compute.params = p
    return compute


# ---------------------------------------------------------------------------------------------
# Gradient of the weights: the same column matrix, multiplied the other way


@njit(cache=True)
def _copy_block(src, b, k0, k1, p0, dst):
    """``dst`` (k1-k0, P) = ``src[b, k0:k1, p0:p0+P]`` (src viewed (n, k, oh*ow))."""
    npix = dst.shape[1]
    for kk in range(k1 - k0):
        row = src[b, k0 + kk]
        d = dst[kk]
        for p in range(npix):
            d[uint64(p)] = row[uint64(p0 + p)]


@njit(parallel=True, cache=True)
def _run_weight(x, dy, groups, r, s, sh, sw, dh, dw, pt, pl, oh, ow, rows_blk, col_buf,
                dy_buf, tmp_buf, partial):
    """``partial[t, g]`` (kg, cg*r*s) = the sum over thread ``t``'s (image, block of output
    rows) of ``dy_block[g] @ col_block[g].T``: each thread packs its block as the forward pass
    does, copies its ``dy`` block to a contiguous one and multiplies (single-threaded BLAS).
    A whole image of a 1x1 stride-1 unpadded layer is its own column matrix: its x and dy
    are read in place (1x1 64 -> 256 @56 at batch 8: 5.8 -> 5.0 ms a call)."""
    n, c = x.shape[0], x.shape[1]
    k = dy.shape[1]
    kg, kcol = k // groups, c // groups * r * s
    nblk = -(-oh // rows_blk)
    items = n * nblk
    threads = partial.shape[0]
    in_place = r * s * sh * sw == 1 and pt == pl == 0 and x.shape[2] == oh and x.shape[3] == ow
    for t in prange(threads):
        partial[t] = 0
        for item in range(t, items, threads):
            b, y0, y1, pb = _block_rows(item, nblk, rows_blk, oh, ow)
            if in_place and pb == oh * ow:
                col, dyb = x[b].reshape(c, pb), dy[b]
            else:
                col = col_buf[t, : c * r * s * pb].reshape(c * r * s, pb)
                dyb = dy_buf[t, : k * pb].reshape(k, pb)
                _pack_rows(x, b, y0, y1, r, s, sh, sw, dh, dw, pt, pl, ow, col, ZERO,
                           c * r * s, ZERO)
                _copy_block(dy, b, 0, k, y0 * ow, dyb)
            for g in range(groups):
                np.dot(dyb[g * kg:(g + 1) * kg], col[g * kcol:(g + 1) * kcol].T, tmp_buf[t])
                partial[t, g] += tmp_buf[t]


@njit(parallel=True, cache=True)
def _weight_gemms(dy, b, col, groups, kblocks, jblocks, first, tmp, dw):
    """``dw[g, k0:k1, j0:j1] (+)= dy[b, g's k0:k1] @ col[g's rows j0:j1].T`` for every group
    and block, one single-threaded BLAS GEMM per Numba thread; ``first``: write rather than
    add (each thread adds through its own ``tmp`` row).

    The blocks cut one side of ``dw``: ``kblocks`` blocks of output channels, or
    ``jblocks`` of columns (the other 1).  Each thread's GEMM packs its own rows of the
    operand it cuts and all of the other, so the larger operand is cut: 1x1 1024 -> 256 @14
    at batch 8 (a column matrix of 1024 x 1568 against 256 rows of dy), 3.7 ms cut by
    output channels, 3.2 by columns.  A column block's GEMM writes into ``tmp``, whose
    rows are then copied (or added) into ``dw``'s."""
    kg, kcol = dw.shape[1], dw.shape[2]
    blocks = kblocks * jblocks
    for j in prange(groups * blocks):
        g, kb, jb = j // blocks, j % blocks // jblocks, j % jblocks
        k0, k1 = kb * kg // kblocks, (kb + 1) * kg // kblocks
        j0, j1 = jb * kcol // jblocks, (jb + 1) * kcol // jblocks
        rows = dy[b, g * kg + k0:g * kg + k1]
        cols = col[g * kcol + j0:g * kcol + j1]
        if jblocks == 1 and first:
            np.dot(rows, cols.T, dw[g, k0:k1])
        elif jblocks == 1:
            t = tmp[j, : (k1 - k0) * kcol].reshape(k1 - k0, kcol)
            np.dot(rows, cols.T, t)
            dw[g, k0:k1] += t
        else:
            t = tmp[j, : (k1 - k0) * (j1 - j0)].reshape(k1 - k0, j1 - j0)
            np.dot(rows, cols.T, t)
            if first:
                dw[g, k0:k1, j0:j1] = t
            else:
                dw[g, k0:k1, j0:j1] += t


@njit(parallel=True, cache=True)
def _pack_images(x, b0, r, s, sh, sw, dh, dw, pt, pl, oh, ow, col, chunks):
    """Fill ``col`` (c*r*s, nb*oh*ow) with the column matrices of images ``b0 .. b0 + nb``
    side by side (image ``j``'s from column ``j oh ow``), each image's rows split in
    ``chunks`` ranges."""
    rows = col.shape[0]
    npix = oh * ow
    nb = col.shape[1] // npix
    for job in prange(nb * chunks):
        j, t = job // chunks, job % chunks
        _pack_rows(x, b0 + j, ZERO, oh, r, s, sh, sw, dh, dw, pt, pl, ow, col,
                   t * rows // chunks, (t + 1) * rows // chunks, j * npix)


def _weight_blocks(spec, params) -> int:
    """Output rows per block of the weight gradient: every thread gets work, and the
    threads' column blocks fit the column budget together."""
    threads = numba.get_num_threads()
    row_bytes = spec.c * spec.r * spec.s * spec.ow * spec.itemsize
    share = -(-spec.n * spec.oh // threads)  # rows of all images a thread gets
    return max(1, min(spec.oh, share, params["col_budget"] // threads // row_bytes))


def _weight_by_channels(spec, p) -> bool:
    """Whether the weight gradient splits the gradient, by output channels or columns,
    rather than the pixels (`_prepare_weight_ksplit`)."""
    npix = spec.oh * spec.ow
    return (npix < 4 * p["small_image"] * numba.get_num_threads()
            and spec.c * spec.r * spec.s * npix * spec.itemsize <= p["col_budget"])


def _images_a_gemm(spec, p) -> int:
    """Images whose column matrices `_prepare_weight_ksplit` packs side by side."""
    crs_pix = spec.c * spec.r * spec.s * spec.oh * spec.ow * spec.itemsize
    return max(1, min(spec.n, p["col_budget"] // crs_pix))


def _cuts_columns(spec, depth) -> bool:
    """Whether `_weight_gemms` cuts the gradient's columns rather than its output channels:
    where the column matrix is the larger operand (each thread then packs only its share
    of it) and the GEMMs are deep enough (``depth`` pixels) to pay for copying their blocks
    into the gradient, at least twice its output channels.  Per call at batch 8 (AVX-512,
    2 cores, ms, output channels -> columns): 1x1 1024 -> 256 @14 5.3 -> 4.5, 3x3 256 @14
    11.5 -> 9.7 (depth 1568); 3x3 512 @7 9.8 -> 10.0 (392); at batch 1, 512 @7 1.86 ->
    2.13 (49: its 9.4 MB gradient copied)."""
    return spec.cg * spec.r * spec.s > spec.kg and depth >= 2 * spec.kg


def workspace_weight(spec, params=None):
    """Bytes of `prepare_weight` and one call: per thread a column block, a dy block and its
    partial weight gradient; split by channels, the column matrices and output gradients of
    the images packed at once, and one block of the gradient per thread."""
    p = _params(params)
    if _weight_by_channels(spec, p):
        nb = _images_a_gemm(spec, p)
        return ((spec.c * spec.r * spec.s + spec.k) * nb * spec.oh * spec.ow
                + spec.params) * spec.itemsize
    rows = _weight_blocks(spec, p)
    per_thread = (spec.c * spec.r * spec.s + spec.k) * rows * spec.ow + 2 * spec.params
    return numba.get_num_threads() * per_thread * spec.itemsize


def prepare_weight(x, spec, params=None):
    """``compute(dy, dw)``: the gradient of the weights, ``dw[g] = sum over images of
    dy[b, g] (kg, oh*ow) @ col(x[b])[g].T (oh*ow, cg*r*s)``, the forward column matrix
    multiplied by the output gradient; the images' and row blocks' products are summed per
    thread, then over the threads.  ``x`` is kept by reference (packed at each call).

    One GEMM per block has ``kg`` rows, ``cg*r*s`` columns and a depth of the block's pixels:
    the shape oneDNN's and PyTorch's GEMM-based weight gradients use.
    """
    p = _params(params)
    dtype = np.dtype(spec.dtype)
    threads = numba.get_num_threads()
    x = np.ascontiguousarray(x)  # a 1x1 layer's images are read in place as matrices
    pt, _, pl, _ = spec.pads
    kcol = spec.cg * spec.r * spec.s
    crs = spec.c * spec.r * spec.s
    # the pixel split adds a (k, cg*r*s) partial per thread, as large as a GEMM of depth
    # 1: it pays from four times the forward pass's small image (256 -> 256 @14, 98 pixels a
    # thread: 0.96 ms split by channels against 2-4 ms by pixels; 128 -> 128 @28, 392: even)
    if _weight_by_channels(spec, p):
        return _prepare_weight_ksplit(x, spec, p, threads)
    rows_blk = _weight_blocks(spec, p)
    pb = rows_blk * spec.ow
    col_buf = pooled_empty((threads, crs * pb), dtype)
    dy_buf = pooled_empty((threads, spec.k * pb), dtype)
    tmp_buf = np.empty((threads, spec.kg, kcol), dtype)
    partial = np.empty((threads, spec.groups, spec.kg, kcol), dtype)
    geometry = (spec.groups, spec.r, spec.s, spec.sh, spec.sw, spec.dh, spec.dw, pt, pl,
                spec.oh, spec.ow, rows_blk)

    def compute(dy, dw):
        with single_threaded_blas():
            _run_weight(x, dy.reshape(spec.n, spec.k, spec.oh * spec.ow), *geometry, col_buf,
                        dy_buf, tmp_buf, partial)
        np.sum(partial, axis=0, out=dw.reshape(spec.groups, spec.kg, kcol))

    compute.params = p
    return compute


def _prepare_weight_ksplit(x, spec, p, threads):
    """`prepare_weight` for images too small to split by pixels: the GEMMs split by output
    channels or columns of the gradient instead (`_weight_gemms`; 512 -> 512 @7: the pixel
    split's per-thread partial gradients, 9 MB each, cost more than the GEMMs; 2.3 ms
    against 6 ms).

    As many images as ``col_budget`` holds are packed side by side and multiplied at once,
    their pixels one GEMM's depth: 512 -> 512 @7 at batch 8 is one GEMM of depth 392 (6.6 ms,
    280 GFLOP/s) where eight of depth 49 took 11.8 ms, before adding them up."""
    dtype = np.dtype(spec.dtype)
    kcol = spec.cg * spec.r * spec.s
    npix = spec.oh * spec.ow
    crs = spec.c * spec.r * spec.s
    nb = _images_a_gemm(spec, p)
    blocks = max(1, min(max(spec.kg, kcol), -(-threads // spec.groups)))
    kblocks, jblocks = (1, blocks) if _cuts_columns(spec, nb * npix) else (blocks, 1)
    col = pooled_empty((crs, nb * npix), dtype)
    dys = pooled_empty((1, spec.k, nb * npix), dtype)
    tmp = np.empty((spec.groups * blocks, -(-spec.kg // kblocks) * -(-kcol // jblocks)), dtype)
    pt, _, pl, _ = spec.pads
    geometry = (spec.r, spec.s, spec.sh, spec.sw, spec.dh, spec.dw, pt, pl, spec.oh, spec.ow)

    def compute(dy, dw):
        dy = dy.reshape(spec.n, spec.k, npix)
        for b0 in range(0, spec.n, nb):
            m = min(nb, spec.n - b0)  # a last, partial chunk uses the start of the buffers
            cols = col.reshape(-1)[:crs * m * npix].reshape(crs, m * npix)
            dyb = dys.reshape(-1)[:spec.k * m * npix].reshape(1, spec.k, m * npix)
            dyb.reshape(spec.k, m, npix)[:] = dy[b0:b0 + m].transpose(1, 0, 2)
            with single_threaded_blas():
                _pack_images(x, b0, *geometry, cols, threads)
                _weight_gemms(dyb, 0, cols, spec.groups, kblocks, jblocks, b0 == 0, tmp,
                              dw.reshape(spec.groups, spec.kg, kcol))

    compute.params = p
    return compute
