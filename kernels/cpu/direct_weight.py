"""Direct weight gradient: register tiles of (output channel, filter tap) sums over pixels.

Algorithm
---------
``dw[k, c, i, j] = sum_{b, y, x} dy[b, k, y, x] * xpad[b, c, y*sh + i*dh, x*sw + j*dw]``.  The
input goes through the forward direct kernel's phase split (`convbench_kernels.cpu.direct`:
the padded image cut into stride phases, flat), after which tap ``t`` of channel ``c`` reads
``xq[b, c, toff[t] + p]`` for output pixel ``p = y*wq + x`` of the flattened grid whose rows
are the phase planes' width ``wq``.  The output gradient is copied onto the same grid
(``dyq``, zeros in the columns ``x >= ow`` and past the last row), so that the gradient of
every (k, c, t) is one unmasked dot product over the grid:

    dw[k, (c, t)] = sum_p dyq[b, k, p] * xq[b, c, toff[t] + p]

a GEMM ``dY (k x P) . X^T (P x c*taps)`` whose second operand is never packed: its columns are
the input rows at the taps' offsets.  This is the weight gradient oneDNN computes directly
(and im2col computes with a packed column matrix, `convbench_kernels.cpu.im2col`).

Register tile: ``kb`` output channels by ``nj`` consecutive columns (c, t), each accumulator
a vector of per-lane partial sums (`convbench_kernels.cpu.microkernel.outer_tile`: ``kb``
loads of dy and ``nj`` of x feed ``kb * nj`` fused multiply-adds), summed across lanes when
the tile's pixels are done.  Consecutive columns are neighbouring taps of one channel, whose
reads overlap: the x loads hit L1.

Work: the pixels (images x grid) are cut in chunks of about ``chunk_bytes`` of dy and x
rows; every chunk runs all tiles, (group, output-channel block, column block), in one
``prange``, and each tile adds its cross-lane sums
(`convbench_kernels.cpu.microkernel.lane_sum`) into ``dw`` (a tile's outputs belong to one
work item: no race). The output gradient goes onto the grid a chunk at a time, just before
the chunk's tiles, into one chunk's workspace: the tiles read it from the caches, where a
copy of the whole of it went through memory and back (conv1 at batch 8: 26 MB; 12.7 -> 11.2
ms a call with the copy's loops unsigned). Images whose grids are smaller than a chunk share
one (512 -> 512 @7 at batch 8: the eight images in one chunk of 512 pixels), so that a
tile's cross-lane sums are amortised over more pixels. Every row and column of a tile reads
at its own offset (``ko``, ``jo``): a last block of output channels or columns that the tile
overhangs repeats its last valid row or column, whose sums are dropped. An unpadded 1x1
stride-1 layer whose images are whole vectors reads x and dy in place: its grid is the image
(ResNet-50's 1x1 64 -> 256 @56 at batch 8: copying dy, 26 MB, was a quarter of the call).

Supported problems
------------------
Every valid problem, as the forward direct kernel: any filter, stride, padding, dilation,
groups, batch; float32 and float64 (the registry's rule is the forward one).

Error
-----
Each gradient is a sum over ``n*oh*ow`` products: per lane in sequence, then across lanes and
chunks, in the input dtype.  Against the float64 oracle it stays within the direct family's
tolerance on the kernel test cases.
"""

import numpy as np
from numba import njit, prange
from numba import uint64 as U

from convbench_kernels.cpu import direct
from convbench_kernels.cpu.common import pooled_empty
from convbench_kernels.cpu.microkernel import lane_sum, outer_tile, stack_tile
from convbench_kernels.cpu.target import Target, current, token


def defaults(target: Target) -> dict:
    """The register tile and chunk for ``target``.

    ``kb`` x ``nj`` accumulators with ``kb`` dy vectors and one x vector live beside them:
    6 x 4 with 32 vector registers (31 live; 10 loads per 24 FMAs), 3 x 4 with 16 (16 live,
    the x vector reused in its register as each is loaded; 7 loads per 12).
    ``chunk_bytes``: dy and x rows of one chunk of pixels, twice the L2 (a thread's tiles
    read a share of them).  Measured on the Intel Xeon (AVX-512, 2 MiB L2, 2 cores) at batch
    8 on ResNet-50's layers, natively and capped at AVX2: docs/kernel-measurements.md,
    "Gradients".
    """
    if target.vector_registers >= 32:
        kb, nj = 6, 4
    else:
        kb, nj = 3, 4
    return {"kb": kb, "nj": nj, "chunk_bytes": 2 * (target.l2_bytes or 1 << 20)}


def _layout(spec, vl):
    """Sizes shared by `workspace` and `prepare`: ``(geometry, grid pixels a plane Pg, length
    of an x channel in the workspace, in place)``; in place, x and dy are read as they are
    (an unpadded 1x1 stride-1 layer whose images are whole vectors)."""
    geom = direct._geometry(spec.n, spec.c, spec.h, spec.w, spec.r, spec.s, spec.sh, spec.sw,
                            spec.dh, spec.dw, spec.pads, spec.oh, vl)
    hq, wq, ps, toff = geom[:4]
    pg = -(-spec.oh * wq // vl) * vl
    in_place = (spec.r * spec.s == 1 and spec.sh * spec.sw == 1 and not any(spec.pads)
                and pg == spec.h * spec.w)
    length = pg if in_place else max(spec.sh * spec.sw * ps, pg + int(toff.max()))
    return geom, pg, length, in_place


def workspace(spec, params=None):
    """Bytes of one call: the phase-split input and one chunk's output gradient on its grid
    (none when they are read in place)."""
    p = {**defaults(current()), **(params or {})}
    vl = current().lanes(spec.itemsize)
    _, pg, length, in_place = _layout(spec, vl)
    if in_place:
        return 0
    chunks = _chunks(spec.n, pg, (spec.k + spec.c) * spec.itemsize, p["chunk_bytes"], vl)
    return spec.itemsize * (spec.n * spec.c * length + _chunk_images(chunks) * spec.k * pg)


def _chunks(n, pg, per_pixel_bytes, chunk_bytes, vl) -> np.ndarray:
    """The pixel chunks, rows ``(first image, end image, first pixel, end pixel)``: whole
    images together when a grid is smaller than a chunk, else each image cut in ranges of
    whole vectors."""
    pixels = max(vl, chunk_bytes // per_pixel_bytes // vl * vl)
    if pg <= pixels:
        per = max(1, pixels // pg)
        return np.array([(b, min(b + per, n), 0, pg) for b in range(0, n, per)], np.int64)
    return np.array([(b, b + 1, p0, min(p0 + pixels, pg)) for b in range(n)
                     for p0 in range(0, pg, pixels)], np.int64)


def _chunk_images(chunks) -> int:
    """The most images a chunk holds (`_chunks` rows)."""
    return int((chunks[:, 1] - chunks[:, 0]).max())


def _offsets(count, block, groups, stride, first) -> np.ndarray:
    """Read offsets of a tile's rows (or columns), (groups, blocks * block): entry i of group
    g is ``first(g, i)`` for ``i < count``; a last block that overhangs ``count`` repeats
    entry ``count - 1`` (its sums are dropped)."""
    i = np.minimum(np.arange(-(-count // block) * block), count - 1)
    return np.stack([first(g, i) for g in range(groups)]).astype(np.intp) * stride


@njit(parallel=True, cache=True)
def _grid_dy(dy, wq, b0, b1, p0, p1, dyq):
    """``dyq[b - b0, k, p] = dy[b, k, y, x]`` for grid pixel ``p = y*wq + x`` in ``[p0, p1)``
    of images ``b0 .. b1``: ``x < ow``; zeros in the other columns and past the last row."""
    k, oh, ow = dy.shape[1], dy.shape[2], dy.shape[3]
    for plane in prange((b1 - b0) * k):
        b, kk = plane // k, plane % k
        src, row = dy[b0 + b, kk], dyq[b, kk]
        p = p0
        while p < p1:
            y = p // wq
            end = min(p1, (y + 1) * wq)  # this grid row's part of the range
            stop = min(end, y * wq + ow) if y < oh else p
            line = src[min(y, oh - 1)]
            for q in range(U(p), U(stop)):  # unsigned: no wraparound test, so vectorized
                row[q] = line[q - U(y * wq)]
            for q in range(U(max(p, stop)), U(end)):
                row[q] = 0
            p = end


@njit(parallel=True, cache=True, fastmath={"contract"})
def _weight(xq, dyq, ko, jo, chunk, first_image, first, k_inner, dw, rows, cols, lanes):
    """Add (``first``: write) every tile's sums over the pixels of ``chunk`` (a `_chunks`
    row: first image, end image, first pixel, end pixel) into ``dw`` (groups, kg, cg*taps).

    ``dyq`` holds the output gradient on the grid from image ``first_image`` on: the
    chunk's part of it alone, just copied (`_grid_dy`) and so still in the caches, or the
    whole of it read in place.

    ``k_inner``: output-channel blocks vary fastest among a chunk's work items, so that a
    thread's consecutive items read the same x columns (else the same dy rows).

    ``ko`` (groups, KP) and ``jo`` (groups, JP): offsets of each row's reads in an image of
    ``dyq`` and each column's in an image of ``xq`` (`_offsets`); ``rows``, ``cols``,
    ``lanes``: `convbench_kernels.cpu.target.token` s, the tile's shape.
    """
    KB, NJ, vl = len(rows), len(cols), len(lanes)
    n, c, L = xq.shape
    k, pg = dyq.shape[1], dyq.shape[2]
    groups, kg, jg = dw.shape
    kp, jp = ko.shape[1], jo.shape[1]
    kblocks, jblocks = kp // KB, jp // NJ
    xf, df, kf, jf = xq.reshape(-1), dyq.reshape(-1), ko.reshape(-1), jo.reshape(-1)
    b0, b1, p0, p1 = chunk[0], chunk[1], chunk[2], chunk[3]
    for item in prange(groups * kblocks * jblocks):
        g = item // (kblocks * jblocks)
        kj = item % (kblocks * jblocks)
        # a thread's consecutive items share their x columns (k_inner) or dy rows
        kb, jb = (kj % kblocks, kj // kblocks) if k_inner else (kj // jblocks, kj % jblocks)
        acc = stack_tile(xq, rows, cols, lanes)  # (KB, NJ * vl)
        width = acc.shape[1]
        for r in range(KB):
            for j in range(width):
                acc[r, j] = 0
        for b in range(b0, b1):
            dbase = U((b - first_image) * k * pg)
            xbase = U(b * c * L)
            for p in range(U(p0), U(p1), U(vl)):
                outer_tile(acc, df, dbase + p, kf, g * kp + kb * KB, xf, xbase + p, jf,
                           g * jp + jb * NJ, rows, cols, lanes)
        for r in range(KB):
            kk = kb * KB + r
            if kk < kg:
                for cj in range(NJ):
                    j = jb * NJ + cj
                    if j < jg:
                        s = lane_sum(acc, r * width + cj * vl, lanes)
                        if first:
                            dw[g, kk, j] = s
                        else:
                            dw[g, kk, j] += s


def prepare(x, spec, params=None):
    """``compute(dy, dw)``: the gradient of the weights of ``spec`` at input ``x`` (kept by
    reference; split in phases at each call, as the input changes every step of training).

    ``params``: ``kb``, ``nj`` (the register tile) and ``chunk_bytes``, over `defaults`;
    ``k_inner`` (see `_weight`), by default where a group has more input than output
    channels: its x columns are then the larger operand, read once per chunk instead of once
    per block of output channels.
    """
    p = {**defaults(current()), **(params or {})}
    dtype = np.dtype(spec.dtype)
    vl = current().lanes(dtype.itemsize)
    geom, pg, length, in_place = _layout(spec, vl)
    hq, wq, ps, toff, *_, nb = geom
    pt, _, pl, _ = spec.pads
    taps, cg, kg = spec.r * spec.s, spec.cg, spec.kg
    ko = _offsets(kg, p["kb"], spec.groups, pg, lambda g, i: g * kg + i)
    jo = _offsets(cg * taps, p["nj"], spec.groups, 1,
                  lambda g, i: (g * cg + i // taps) * length + toff[i % taps])
    chunks = _chunks(spec.n, pg, (spec.k + spec.c) * dtype.itemsize, p["chunk_bytes"], vl)
    tile = (token(p["kb"]), token(p["nj"]), token(vl))
    k_inner = p["k_inner"] if p.get("k_inner") is not None else spec.cg > spec.kg
    x = np.ascontiguousarray(x)

    def tiles(xq, dyq, chunk, first_image, first, dw):
        _weight(xq, dyq, ko, jo, chunk, first_image, first, k_inner,
                dw.reshape(spec.groups, kg, cg * taps), *tile)

    if in_place:
        def compute(dy, dw):
            for i, chunk in enumerate(chunks):
                tiles(x.reshape(spec.n, spec.c, length), dy.reshape(spec.n, spec.k, pg), chunk,
                      0, i == 0, dw)
    else:
        xq = pooled_empty((spec.n, spec.c, length), dtype)
        xq[:, :, spec.sh * spec.sw * ps:] = 0  # the tail that the phase split leaves alone
        dyq = pooled_empty((_chunk_images(chunks), spec.k, pg), dtype)

        def compute(dy, dw):
            direct._phase_split(x, pt, pl, spec.sh, spec.sw, hq, wq, ps, nb, xq)
            for i, chunk in enumerate(chunks):
                _grid_dy(dy, wq, *chunk, dyq)
                tiles(xq, dyq, chunk, chunk[0], i == 0, dw)

    compute.params = p
    compute.chunks = chunks  # rows (first image, end image, first pixel, end pixel)
    return compute
