"""Direct convolution: register-blocked loops over output channels x a run of output pixels.

Layout
------
The input of each image and channel is copied into a flat, zero-padded, *phase-split*
workspace ``xq`` (n, c, L): the padded image (hp, wp) is cut into ``sh*sw`` stride phases,
plane ``(py, px)`` holding ``xp[py::sh, px::sw]`` as a (hq, wq) image, ``hq = ceil(hp/sh)``,
``wq = ceil(wp/sw)``.  Filter tap ``(i, j)`` then reads plane ``(i*dh % sh, j*dw % sw)``
shifted by ``(i*dh // sh, j*dw // sw)``, so output pixel ``(y, x)`` of *any* stride and
dilation reads element ``toff[t] + y*wq + x`` of its channel: the output is computed on the
flattened grid ``p = y*wq + x`` (``x < wq``; columns ``x >= ow`` are computed and dropped),
and every tap's reads are contiguous in ``p``.  A zero tail after the planes keeps the last
pixel block's reads in bounds, so the inner loops have no bounds checks.

The weights are read in place, viewed as ``wt`` (groups, kg/KB, cg, r*s, KB): for each
(channel, tap) the loop broadcasts the KB weights of its block from KB rows of ``w``, which
costs nothing to prepare (copying them to that layout, contiguous in KB, cost 0.1-0.7 ms a
call on the ResNet-50 layers, more than it saved).  Only a kg that is not a multiple of KB
gets a copy, padded with zero output channels.  ``xq`` comes from
`kernels.cpu.common.pooled_empty`: a layer prepared per call reuses the memory of the last
one instead of page-faulting a fresh block.

Work item = (image, group, pixel block of ``tile`` flattened pixels, output-channel block of
KB), flattened into one ``prange`` so that batch 1 fills both cores; channel blocks are
innermost, so that a thread's consecutive items reuse one input tile from L1.  Each item
accumulates a (KB, tile) tile in a stack array (see ``_stack_tile``), over channels then taps:
per (channel, tap) two vector loads of input feed 2*KB FMAs whose KB weights are scalar
broadcasts.  ``tile`` is 128 bytes of pixels (32 float32, 16 float64) and KB = 8: 16 vector
accumulators, half the AVX-512 register file (8x128 beat 8x192, 12x128, 6x256 and 4x256 on
the ResNet-50 layers; measured again with the weights read in place: 8x192 1-67% and 12x128
50-110% slower).  An unpadded 1x1 stride-1 layer skips the copy and reads the input
in place, its last pixel tile moved back so as not to read past the array.

Supported problems
------------------
Every valid problem: any filter, stride, asymmetric padding, dilation, groups, batch,
float32 and float64.  ``supports`` always returns None.

Error
-----
Each output is one sequential sum of ``cg*r*s`` products in the input dtype, with fused
multiply-adds (``fastmath={'contract'}``: contraction only; the loops vectorize over pixels,
so reassociation would buy nothing).  Against the float64 oracle max|out - ref| / max|ref| is
~1e-6 in float32 (2.9e-6 for 15x15 32->32) and ~1e-16 in float64.

Reference
---------
The register blocking of output channels x output pixels follows E. Georganas et al.,
"Anatomy of High-Performance Deep Learning Convolutions on SIMD Architectures", SC 2018, here
with pixels (not channels) in the SIMD lanes so that the NCHW layout needs no transpose.
"""

import numpy as np
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from kernels.cpu.common import every_problem, pooled_empty, with_phases

KB = 8  # output channels per register tile
TILE_BYTES = 128  # bytes of output pixels per register tile row (2 AVX-512 vectors)


@intrinsic
def _stack_tile(typingctx, like):
    """A (KB, TILE_BYTES // itemsize) C array of ``like``'s dtype on the stack, uninitialized.

    A heap array (np.empty) would keep the accumulators in memory: LLVM cannot prove that it
    does not alias the input, so every FMA would load and store its accumulator.  A stack
    array (an ``alloca``) provably aliases nothing, and LLVM promotes it to registers.
    """
    dt = like.dtype
    cols = TILE_BYTES // (dt.bitwidth // 8)
    retty = types.Array(dt, 2, "C")

    def codegen(context, builder, signature, args):
        ptr = cgutils.alloca_once(builder, context.get_data_type(dt), size=KB * cols)
        itemsize = context.get_abi_sizeof(context.get_data_type(dt))
        intp = lambda v: context.get_constant(types.intp, v)  # noqa: E731
        ary = context.make_array(retty)(context, builder)
        context.populate_array(ary, data=ptr, shape=[intp(KB), intp(cols)],
                               strides=[intp(cols * itemsize), intp(itemsize)],
                               itemsize=intp(itemsize), meminfo=None)
        return ary._getvalue()

    return retty(like), codegen


supports = every_problem  # any filter, stride, padding, dilation, groups, batch


@njit(parallel=True, cache=True)
def _phase_split(x, pt, pl, sh, sw, hq, wq, xq):
    """Write the padded input ``x`` (n, c, h, w), split in stride phases, into ``xq`` (n, c, L).

    Plane ``py*sw + px`` occupies ``[(py*sw + px)*hq*wq, ...)`` of each channel and holds
    ``xp[py + sh*i, px + sw*j]`` at ``i*wq + j``, where ``xp`` is ``x`` padded by ``pt`` rows
    on top and ``pl`` columns on the left (zeros outside ``x``).  The tail past the planes is
    left alone (zeroed once in ``prepare``).
    """
    n, c, h, w = x.shape
    # plane columns j with 0 <= px + sw*j - pl < w hold input; the rest are padding
    j0s = np.empty(sw, np.intp)
    j1s = np.empty(sw, np.intp)
    for px in range(sw):
        j0s[px] = min(max(-((px - pl) // sw), 0), wq)
        j1s[px] = min(max((w - 1 - px + pl) // sw + 1, j0s[px]), wq)
    # split by plane rows, so that conv1's 3 channels still share out evenly (a split by channels
    # gives one thread 2 of them) and the thread convolving the top of the output wrote the top
    # of every plane; no divisions per row (an item per (channel, plane, row) took 0.27 ms to
    # pad 3x3 s2 128@56, 0.10 ms this way, within noise of a split by channels)
    for i in prange(hq):
        for b in range(n):
            for ch in range(c):
                for py in range(sh):
                    row = py + sh * i - pt
                    for px in range(sw):
                        # slices keep every index below >= 0: a possibly negative index gets a
                        # wraparound select that turns vector loads and stores into gathers
                        dst = xq[b, ch, ((py * sw + px) * hq + i) * wq:]
                        if row < 0 or row >= h:
                            for j in range(wq):
                                dst[j] = 0
                            continue
                        j0, j1 = j0s[px], j1s[px]
                        src = x[b, ch, row, px + sw * j0 - pl:]
                        for j in range(j0):
                            dst[j] = 0
                        for j in range(j1 - j0):
                            dst[j0 + j] = src[sw * j]
                        for j in range(j1, wq):
                            dst[j] = 0


@njit(parallel=True, cache=True, fastmath={"contract"})
def _direct(xq, wt, toff, wq, tile, p_last, out):
    """Accumulate every (KB, tile) output tile over channels and taps and store it in ``out``.

    Parameters
    ----------
    xq : ndarray (n, c, L)
        Phase-split padded input (see ``_phase_split``), or the input itself viewed as
        (n, c, h*w) for an unpadded 1x1 stride-1 problem.
    wt : ndarray (groups, kblocks, cg, taps, KB), strided
        The weights (a view of the caller's, or of a copy padded with zero output channels
        past kg in the last block).
    toff : ndarray (taps,) of intp
        Offset of each tap's reads in a channel of ``xq``.
    wq : int
        Width of the flattened output grid (output columns ``>= ow`` are dropped).
    tile : int
        Pixels per tile, TILE_BYTES // itemsize.
    p_last : int
        Largest first pixel of a tile.  With ``xq`` the input itself, the last tile is moved
        back to end at the last pixel, so that it reads nothing past the array, and stores
        only the pixels that the tile before it did not.
    out : ndarray (n, k, oh, ow)
        Overwritten.
    """
    n = xq.shape[0]
    groups, kblocks, cg, taps = wt.shape[0], wt.shape[1], wt.shape[2], wt.shape[3]
    k, oh, ow = out.shape[1], out.shape[2], out.shape[3]
    kg = k // groups
    pblocks = (oh * wq + tile - 1) // tile
    # output-channel blocks innermost: consecutive items of a thread reuse one input tile
    # from L1 (measured 5-25% faster than pixel blocks innermost on the ResNet-50 layers)
    for item in prange(n * groups * pblocks * kblocks):
        kb = item % kblocks
        rest = item // kblocks
        blk = rest % pblocks
        rest //= pblocks
        g = rest % groups
        b = rest // groups
        p0 = min(blk * tile, p_last)
        acc = _stack_tile(xq)  # (KB, tile)
        # the loops below take their trip count from acc.shape, a compile-time constant, so
        # that LLVM unrolls them fully and keeps acc in registers (a first draft that took
        # it from xq.itemsize, a run-time field, and indexed xc[toff[t] + p0 + j] ran the
        # 3x3 layers at 40 GFLOP/s; this loop nest runs them at 390)
        cols = acc.shape[1]
        for kk in range(KB):
            for j in range(cols):
                acc[kk, j] = 0
        for ci in range(cg):
            xc = xq[b, g * cg + ci]
            wc = wt[g, kb, ci]  # (taps, KB)
            for t in range(taps):
                # a slice, so that the index j below is provably >= 0: an index that might be
                # negative gets a wraparound select, which turns the vector load into a gather
                xs = xc[toff[t] + p0:]
                for j in range(cols):
                    xv = xs[j]
                    for kk in range(KB):
                        acc[kk, j] += wc[t, kk] * xv
        # scatter the tile's valid pixels, row segment by row segment
        j = blk * tile - p0
        y = (p0 + j) // wq
        x0 = p0 + j - y * wq
        while j < cols and y < oh:
            seg = min(cols - j, wq - x0)
            valid = min(seg, ow - x0)
            for kk in range(KB):
                ko = kb * KB + kk
                if ko < kg:
                    # slices again keep the indices >= 0, so the copy vectorizes
                    orow = out[b, g * kg + ko, y, x0:]
                    arow = acc[kk, j:]
                    for v in range(valid):
                        orow[v] = arow[v]
            j += seg
            y += 1
            x0 = 0


def workspace(spec):
    """Bytes `prepare` and one call allocate: the phase-split padded input and, where kg is not
    a multiple of KB, the weights padded to whole blocks (they are otherwise read in place)."""
    pt, pb, pl, pr = spec.pads
    weights = bool(spec.kg % KB) * -(-spec.kg // KB) * KB * spec.groups * spec.cg * spec.r * spec.s
    xq = spec.n * spec.c * ((spec.h + pt + pb + spec.sh) * (spec.w + pl + pr + spec.sw)
                            + TILE_BYTES // spec.itemsize + spec.r * spec.s)
    return spec.itemsize * (weights + xq)


def prepare(w, spec):
    """View the weights in blocks, take the workspace, and return ``compute(x, out)``.

    Parameters
    ----------
    w : ndarray (k, c // groups, r, s)
        The filters, C-contiguous, of dtype ``spec.dtype``.
    spec : ConvSpec-like
        The problem.

    Returns
    -------
    callable
        ``compute(x, out)`` writing the convolution of ``x`` (n, c, h, w) into ``out``
        (n, k, oh, ow).  It reads ``w`` in place: changing ``w`` changes later results, as
        with a framework's layer.
    """
    dtype = np.dtype(spec.dtype)
    pt, pb, pl, pr = spec.pads
    sh, sw, dh, dw = spec.sh, spec.sw, spec.dh, spec.dw
    groups, cg, kg, r, s = spec.groups, spec.cg, spec.kg, spec.r, spec.s
    hq = -(-(spec.h + pt + pb) // sh)
    wq = -(-(spec.w + pl + pr) // sw)

    kblocks = -(-kg // KB)
    wk = w.reshape(groups, kg, cg, r * s)
    if kg % KB:
        # zero output channels complete the last block
        wk = pooled_empty((groups, kblocks * KB, cg, r * s), dtype)
        wk[:, :kg] = w.reshape(groups, kg, cg, r * s)
        wk[:, kg:] = 0
    # the weights read in place, (groups, kblocks, KB, cg, taps) viewed as
    # (groups, kblocks, cg, taps, KB): a copy to that layout (a parallel reorder into a reused
    # buffer) made the call slower on every ResNet-50 layer (3x3 s2 128@56: 0.90 against
    # 0.80 ms, 512@7: 1.3 against 0.77 ms) for a compute at most 3% faster
    wt = wk.reshape(groups, kblocks, KB, cg, r * s).transpose(0, 1, 3, 4, 2)

    # tap (i, j) reads plane (i*dh % sh, j*dw % sw) shifted by (i*dh // sh, j*dw // sw)
    offsets = [((i * dh % sh) * sw + j * dw % sw) * hq * wq + (i * dh // sh) * wq + j * dw // sw
               for i in range(r) for j in range(s)]
    toff = np.array(offsets, dtype=np.intp)

    tile = TILE_BYTES // dtype.itemsize
    npix = spec.oh * wq
    if r * s == 1 and sh * sw == 1 and not any(spec.pads) and npix >= tile:
        # a 1x1 stride-1 unpadded layer reads the input in place: no copy
        p_last = npix - tile

        def compute(x, out):
            _direct(x.reshape(x.shape[0], x.shape[1], npix), wt, toff, wq, tile, p_last, out)

        return compute

    p_last = (npix - 1) // tile * tile
    reach = p_last + tile + max(offsets)  # end of the last tile's reads
    xq = pooled_empty((spec.n, spec.c, max(sh * sw * hq * wq, reach)), dtype)
    xq[:, :, sh * sw * hq * wq:] = 0  # the tail that _phase_split leaves alone

    def pad(x, out):
        _phase_split(x, pt, pl, sh, sw, hq, wq, xq)

    def convolve(x, out):
        _direct(xq, wt, toff, wq, tile, p_last, out)

    return with_phases(("pad", pad), ("convolve", convolve))
