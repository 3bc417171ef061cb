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
pixel block's reads in bounds, so the inner loops have no bounds checks.  The split reads
each input row once and, at stride 2, writes both column phases in the same pass; work items
are (image, channel, block of plane rows), enough of them for two threads even with conv1's 3
channels.

The register tile is ``kb`` output channels by ``nv`` vectors of pixels, shaped by the compile
target (`defaults`: the target's vector width and register count; `space`: the tiles a tuner
may measure), and passed to the compiled kernel as `convbench_kernels.cpu.target.token` s, so
that its loops have constant trip counts and Numba's cache keeps one compilation per tile.
The weights are read in place, viewed as ``wt`` (groups, kg/kb, kb, cg, r*s): for each
(channel, tap) the kernel broadcasts the kb weights of its block from kb rows of ``w``, which
costs nothing to prepare (copying them to a layout with kb contiguous cost more on every
ResNet-50 layer than it saved: see `prepare`).  Only a kg that is not a multiple of kb gets a
copy, padded with zero output channels.  ``xq`` comes from
`convbench_kernels.cpu.common.pooled_empty`: a layer prepared per call reuses the memory of
the last one instead of page-faulting a fresh block.

Work item = (image, group, pixel block of ``tile = nv * lanes`` flattened pixels,
output-channel block of kb), flattened into one ``prange`` so that batch 1 fills both cores;
channel blocks are innermost, so that a thread's consecutive items reuse one input tile from
L1.  Each item accumulates a (kb, tile) tile in a stack array (see ``stack_tile``), over
channels then taps, one micro-kernel step (`fma_tile`) per (channel, tap): nv vector loads of
input feed kb * nv fused multiply-adds whose kb weights are broadcasts; the tile then goes from
registers to ``out`` by masked vector stores, one per vector and output row it meets (see
``store_lanes``).  An unpadded 1x1 stride-1 layer skips the copy and reads the input in place,
its last pixel tile moved back so as not to read past the array.

A second kernel puts output channels in the lanes instead (`_direct_oc`): a tile of ``ct``
pixels of one output row by ``kv`` vectors of output channels, each step broadcasting the
``ct`` input pixels into ``kv`` weight vectors, from weights packed per call (`_pack_oc`; a
gradient's filter larger than the L2 block by block inside the jobs, `_direct_oc_packing`).  It
computes only real pixels (no dropped grid columns, no pixel vector half past a small
image's end) and, with AVX-512's broadcasts as memory operands, loads less per multiply-add;
it runs where there are enough pixels to pay for the pack and registers for its tile
(`_oc_tile`, `defaults`).  Both sum in the same order, so they agree to the bit.

Indices into the flat workspace, input and output are unsigned (``numba.uint64``): Numba
gives a signed index that might be negative a wraparound select, and LLVM then turns vector
loads into gathers or keeps scalar loops (3x3 s2 128@56: the phase split runs 3-4x faster
with unsigned indices and one loop for both column phases than with signed indices and a
loop per phase; the convolution with a slice per tap, which also clamps its start, ran 12 %
faster with unsigned indices).

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

import functools
import math

import numba
import numpy as np
from numba import njit, prange
from numba import uint64 as U

from convbench_kernels.contract import every_problem, with_phases
from convbench_kernels.cpu.common import pooled_empty
from convbench_kernels.cpu.microkernel import fma_tile, stack_tile, store_lanes
from convbench_kernels.cpu.target import Target, current, resolve, token
from convbench_kernels.directions import SwappedFilter


def defaults(target: Target) -> dict:
    """The register tile for ``target``: ``kb`` output channels x ``nv`` vectors of pixels.

    Three vectors a row and three quarters of the register file as accumulators, the rest
    for the row's input vectors and a weight broadcast (`fma_tile`): 8 x 3 with 32 vector
    registers (AVX-512, NEON), 4 x 3 with 16 (AVX2).  Measured on ResNet-50's 3x3 and 1x1
    layers, both were the best or within 5 % of the best tile of `space`
    (docs/kernel-measurements.md).

    ``chunk_bytes``: the input tile of one chunk of channels, which every output-channel
    block of a work item reads before the next chunk's (`_chunk`; 0: all channels in one
    chunk).  A quarter of the L1 data cache with 16 registers: 4 x 3 AVX2 tiles, with 7 loads
    per 12 FMAs, ran ResNet-50's 3x3 layers 6-15 % faster so; none with 32: 8 x 3 tiles, with
    11 loads per 24 FMAs, ran every layer 3-15 % slower in chunks (the weights' reads, one
    short run per chunk and block, cost more than the L2 reads of the input saved).

    ``oc_min``: the fewest output pixels (batch x oh x ow) for which the channel-lane kernel
    runs where the layer's shape allows it (`_oc_tile`; 0: never): `OC_MIN_PIXELS` with 32
    registers.  Off with 16 registers: there each broadcast needs a register of its own (no
    embedded broadcast, as AVX-512 has, nor NEON's multiply by element), and on ResNet-50's
    layers at batch 8, capped at AVX2, the tiles that fit (7 x 2, 4 x 3) took 0.95-1.8x the
    pixel-lane kernel's time (faster only at 3x3 stride 2 and 512@7, by 4-5 %), those of
    `OC_TILES` 1.1-1.6x.  (NEON, with 32 registers, gets the AVX-512 default unmeasured.)

    ``oc_input_bytes``: the most input an image has per group (all its channels, padded)
    where the channel-lane kernel runs, half the L2.  Each of its tiles reads a few pixels
    of every input channel: while an image's channels stay in L2 those reads come from it;
    beyond, each channel is a stream from memory, more streams than the prefetchers follow
    (1x1 256 -> 64 @56, 3.2 MB an image: 8.5-9.3 ms at batch 8 against 7.2-8.0 for the
    pixel-lane kernel; 3x3 s2 128 @56, 1.7 MB: 5 % slower; every layer of 0.9 MB or less
    13-30 % faster).
    """
    regs = target.vector_registers
    chunk = (target.l1d_bytes or 32768) // 4 if regs <= 16 else 0
    return {"kb": max(regs // 4, 1), "nv": 3, "chunk_bytes": chunk,
            "oc_min": OC_MIN_PIXELS if regs >= 32 else 0,
            "oc_input_bytes": (target.l2_bytes or 1 << 20) // 2}


def space(target: Target) -> list[dict]:
    """The tiles worth measuring on ``target``: ``kb`` x ``nv`` tiles of 2 to 4 vectors a row
    whose accumulators, input vectors and one broadcast fit in the register file, with at
    least half of it as accumulators (smaller tiles reload their inputs too often): 6 tiles
    with 16 registers, 8 with 32; then, with the default tile, the channel chunks other than
    the default (none, a quarter or half of L1), which need no compilation of their own; and
    the channel-lane kernel on or off (`_oc_tile`)."""
    regs = target.vector_registers
    tiles = [{"kb": kb, "nv": nv} for kb in (2, 3, 4, 5, 6, 8, 10, 12) for nv in (2, 3, 4)
             if kb * nv + nv + 1 <= regs and kb * nv >= regs // 2]
    l1 = target.l1d_bytes or 32768
    chunks = [{"chunk_bytes": b} for b in (0, l1 // 4, l1 // 2)
              if b != defaults(target)["chunk_bytes"]]
    lanes = [{"oc_min": m} for m in (0, OC_MIN_PIXELS) if m != defaults(target)["oc_min"]]
    return tiles + chunks + lanes


# A smaller tile is used where it computes this much less of the pixel grid (tiles past its
# end are wasted work): on 2 cores with AVX-512, 3x3 512@7 (63 grid pixels) ran 1.3x faster
# with 2-vector rows (64 pixels computed) than with 3 (96), while 1x1 1024@14 (196 pixels) ran
# 5 % faster with 3 (240 computed) than with 2 (224): the larger tile reuses its loads more.
SMALLER_TILE_SAVES = 0.2


# A tile one vector wider a row (as many accumulators, fewer rows: 8 x 3 -> 6 x 4 with 32
# registers) is used where each output sums at most this many products (input channels x
# taps) and the wider row computes no more of the grid: there a tile's fixed cost (its
# accumulators zeroed and stored, its weights' rows found) is paid over few multiply-adds,
# and the wider row pays it for more pixels.  AVX-512, 2 cores, batch 1, fraction of the GEMM
# peak, 8 x 3 against 6 x 4: 1x1 64 -> 256 @56 (64 products) 64-68 against 79-81 %, 128 ->
# 256 @56 69 against 82, 64 -> 256 @28 60 against 70, 7x7 stride 2 3 -> 64 @224 (147) 73
# against 86; but 1x1 256 -> 64 @56 (256) 62 against 61, 3x3 32 @56 (288) 93 against 93, 3x3
# 64 @56 (576) 82 against 77.  Only where the wider tile fits the register file (not 4 x 3's
# 16 registers).
SHORT_REDUCTION = 192


def _grid_pixels(spec) -> int:
    """Pixels of the flattened output grid: oh rows of the phase planes' width (see
    `_geometry`; the columns past ow are computed and dropped)."""
    pt, pb, pl, pr = spec.pads
    return spec.oh * -(-(spec.w + pl + pr) // spec.sw)


def _partial_sums(spec, tile, kblocks, kb) -> int:
    """Elements of `_direct`'s ``part``: one (kb, tile) tile per pixel block and output-channel
    block."""
    return spec.n * spec.groups * -(-_grid_pixels(spec) // tile) * kblocks * kb * tile


def _params(spec, given=None) -> tuple[dict, int]:
    """The tile parameters and the pixels of a tile row for ``spec``'s dtype: the resolved
    parameters, with ``nv`` lowered by one where that computes `SMALLER_TILE_SAVES` less of
    the flattened output grid (small images), or raised by one, ``kb`` lowered to keep the
    accumulators, for a `SHORT_REDUCTION` (one step only, so that a tile compiles at most
    three ways per dtype)."""
    p = resolve("direct", defaults(current()), given)
    vl = current().lanes(np.dtype(spec.dtype).itemsize)
    npix = _grid_pixels(spec)

    def computed(nv):
        return -(-npix // (nv * vl)) * nv * vl

    kb, nv = p["kb"], p["nv"]
    wide = kb * nv // (nv + 1)
    if nv > 1 and computed(nv - 1) <= (1 - SMALLER_TILE_SAVES) * computed(nv):
        nv -= 1
    elif (spec.cg * spec.r * spec.s <= SHORT_REDUCTION and wide * (nv + 1) == kb * nv
          and (wide + 1) * (nv + 1) + 1 <= current().vector_registers
          and computed(nv + 1) <= 1.05 * computed(nv)):
        kb, nv = wide, nv + 1
    return {**p, "kb": kb, "nv": nv}, nv * vl


supports = every_problem  # any filter, stride, padding, dilation, groups, batch


@njit(cache=True, inline="always")
def split_row(src, s, px, left, step, w, dst, d, wq):
    """One row of column phase ``px``: ``dst[d + j] = src[s + px + step*j - left]`` for the
    plane columns ``j < wq`` that hold input (``0 <= px + step*j - left < w``), zero for the
    others (``src[s:s + w]``: an input row, ``left`` columns of zeros before it)."""
    j0 = min(max(-((px - left) // step), 0), wq)
    j1 = min(max((w - 1 - px + left) // step + 1, j0), wq)
    for j in range(U(j0)):
        dst[U(d) + j] = 0
    s0 = U(s) + U(px + step * j0 - left)  # both >= 0 (uint64 plus int64 would be a float)
    for j in range(U(j1 - j0)):
        dst[U(d + j0) + j] = src[s0 + U(step) * j]
    for j in range(U(j1), U(wq)):
        dst[U(d) + j] = 0


@njit(parallel=True, cache=True)
def _phase_split(x, pt, pl, sh, sw, hq, wq, ps, nb, xq):
    """Write the padded input ``x`` (n, c, h, w), split in stride phases, into ``xq`` (n, c, L).

    Plane ``py*sw + px`` starts at ``(py*sw + px)*ps`` of each channel and holds
    ``xp[py + sh*i, px + sw*j]`` at ``i*wq + j``, where ``xp`` is ``x`` padded by ``pt`` rows
    on top and ``pl`` columns on the left (zeros outside ``x``).  The tail past the planes is
    left alone (zeroed once in ``prepare``).  Work item: (image, channel, block of
    ``ceil(hq/nb)`` plane rows).
    """
    n, c, h, w = x.shape
    L = xq.shape[2]
    xf = x.reshape(-1)
    qf = xq.reshape(-1)
    per = -(-hq // nb)
    for item in prange(n * c * nb):
        nc = item // nb
        i0 = item % nb * per
        for i in range(i0, min(i0 + per, hq)):
            for py in range(sh):
                row = py + sh * i - pt
                pbase = nc * L + py * sw * ps + i * wq  # row i of plane (py, 0)
                if row < 0 or row >= h:
                    for px in range(sw):
                        d = U(pbase + px * ps)
                        for j in range(U(wq)):
                            qf[d + j] = 0
                    continue
                src = U((nc * h + row) * w)
                if sw == 1:
                    d = U(pbase)
                    for j in range(U(pl)):
                        qf[d + j] = 0
                    d += U(pl)
                    for j in range(U(w)):
                        qf[d + j] = xf[src + j]
                    for j in range(U(pl + w), U(wq)):
                        qf[U(pbase) + j] = 0
                elif sw == 2:
                    # both column phases in one pass over the row (3-4x faster on 3x3 s2
                    # 128@56 than a loop per phase with signed indices).  LLVM turns the
                    # stride-2 load pair into vector loads and permutes from 32 pairs on;
                    # shorter rows run its scalar remainder.  Whole vectors moved by an
                    # intrinsic made every path of this function 30-40 % slower (even 512@7,
                    # whose rows it does not touch), so they are not used.
                    e = pl % 2  # phase of the even input columns
                    de = pbase + e * ps + pl // 2
                    do = pbase + (1 - e) * ps + (pl + 1) // 2
                    n2 = w // 2
                    ne, no = n2 + w % 2, n2  # even and odd input columns
                    for j in range(U(pl // 2)):
                        qf[U(pbase + e * ps) + j] = 0
                    for j in range(U(pl // 2 + ne), U(wq)):
                        qf[U(pbase + e * ps) + j] = 0
                    for j in range(U((pl + 1) // 2)):
                        qf[U(pbase + (1 - e) * ps) + j] = 0
                    for j in range(U((pl + 1) // 2 + no), U(wq)):
                        qf[U(pbase + (1 - e) * ps) + j] = 0
                    ude, udo = U(de), U(do)
                    for m in range(U(n2)):
                        qf[ude + m] = xf[src + U(2) * m]
                        qf[udo + m] = xf[src + U(2) * m + U(1)]
                    if w % 2:
                        qf[U(de + n2)] = xf[src + U(w - 1)]
                else:
                    for px in range(sw):
                        split_row(xf, src, px, pl, sw, w, qf, pbase + px * ps, wq)


@njit(parallel=True, cache=True, fastmath={"contract"})
def _direct(xq, wt, toff, wq, p_last, out, part, cb, kgroups, rows, vecs, lanes):
    """Accumulate every (kb, tile) output tile over channels and taps and store it in ``out``.

    Parameters
    ----------
    xq : ndarray (n, c, L)
        Phase-split padded input (see ``_phase_split``), or the input itself viewed as
        (n, c, h*w) for an unpadded 1x1 stride-1 problem.
    wt : ndarray (groups, kblocks, kb, cg, taps)
        The weights (the caller's, reshaped, or a copy padded with zero output channels past
        kg in the last block).
    toff : ndarray (taps,) of intp
        Offset of each tap's reads in a channel of ``xq``.
    wq : int
        Width of the flattened output grid (output columns ``>= ow`` are dropped).
    p_last : int
        Largest first pixel of a tile.  With ``xq`` the input itself, the last tile is moved
        back to end at the last pixel, so that it reads nothing past the array, and stores
        only the pixels that the tile before it did not.
    out : ndarray (n, k, oh, ow)
        Overwritten.
    part : ndarray (n * groups * pblocks * kblocks * kb * tile,)
        The tiles' partial sums between channel chunks (unused, and may be empty, when
        ``cb >= cg``).
    cb : int
        Input channels per chunk: a work item runs its output-channel blocks over one chunk
        of channels, then the next, so that the chunk's input tile stays in L1 while every
        block reads it (see `_chunk`).
    kgroups : int
        Output-channel blocks are split in this many groups, one work item each, so that
        small images still give every thread several items.
    rows, vecs, lanes : tuples
        `convbench_kernels.cpu.target.token` s: the tile is ``kb = len(rows)`` output channels
        by ``len(vecs)`` vectors of ``len(lanes)`` pixels (constants of the compiled code).
    """
    KB = len(rows)
    vl = len(lanes)
    tile = len(vecs) * vl
    n, c, L = xq.shape
    xf = xq.reshape(-1)
    of = out.reshape(-1)
    wf = wt.reshape(-1)
    groups, kblocks, cg, taps = wt.shape[0], wt.shape[1], wt.shape[3], wt.shape[4]
    k, oh, ow = out.shape[1], out.shape[2], out.shape[3]
    kg = k // groups
    pblocks = (oh * wq + tile - 1) // tile
    kper = -(-kblocks // kgroups)
    nchunks = -(-cg // cb)
    for item in prange(n * groups * pblocks * kgroups):
        kgi = item % kgroups
        rest = item // kgroups
        blk = rest % pblocks
        rest //= pblocks
        g = rest % groups
        b = rest // groups
        p0 = min(blk * tile, p_last)
        for ch in range(nchunks):
            c0 = ch * cb
            c1 = min(c0 + cb, cg)
            # output-channel blocks innermost: they all reuse one input tile from L1
            # (measured 5-25% faster than pixel blocks innermost on the ResNet-50 layers)
            for kb in range(kgi * kper, min(kgi * kper + kper, kblocks)):
                acc = stack_tile(xq, rows, vecs, lanes)  # (KB, tile)
                # the loops below take their trip count from acc.shape, a compile-time
                # constant, so that LLVM unrolls them fully and keeps acc in registers (taking
                # it from xq.itemsize, a run-time field, and indexing xc[toff[t] + p0 + j] ran
                # the 3x3 layers about ten times slower)
                cols = acc.shape[1]
                pb = U((((b * groups + g) * pblocks + blk) * kblocks + kb) * KB * cols)
                for kk in range(KB):
                    for j in range(cols):
                        acc[kk, j] = 0 if ch == 0 else part[pb + U(kk * cols + j)]
                wblock = ((g * kblocks + kb) * KB) * cg * taps  # weight (g, kb, 0, 0, 0) in wf
                for ci in range(c0, c1):
                    xc = U(((b * c + g * cg + ci) * L) + p0)
                    for t in range(taps):
                        # unsigned indices: no wraparound select (a signed index that might
                        # be negative gets one, which turns the vector load into a gather)
                        fma_tile(acc, xf, xc + U(toff[t]), wf, wblock + ci * taps + t,
                                  cg * taps, rows, vecs, lanes)
                if ch < nchunks - 1:
                    for kk in range(KB):
                        for j in range(cols):
                            part[pb + U(kk * cols + j)] = acc[kk, j]
                    continue
                # store the tile's valid pixels, row segment by row segment: each of its
                # vectors by a masked store shifted so that lane j lands on the segment's
                # first pixel.  A copy loop per segment read the tile back from the stack and
                # ran its scalar remainder (conv1: 17 % slower; with no stores at all conv1
                # ran only 2 % faster than with these)
                kcount = min(KB, kg - kb * KB)
                j = blk * tile - p0
                y = (p0 + j) // wq
                x0 = p0 + j - y * wq
                while j < cols and y < oh:
                    seg = min(cols - j, wq - x0)
                    valid = min(seg, ow - x0)
                    o = ((b * k + g * kg + kb * KB) * oh + y) * ow + x0
                    if valid > 0:
                        base = o - j  # out index of the tile's lane 0 in this row
                        for kk in range(KB):  # unrolled: constant offsets into acc
                            if kk < kcount:
                                ob = base + kk * oh * ow
                                for v in range(len(vecs)):  # unrolled: constant offsets
                                    store_lanes(of, ob + v * vl, acc, kk * cols + v * vl,
                                                 j - v * vl, j + valid - v * vl, lanes)
                    j += seg
                    y += 1
                    x0 = 0


# The channel-lane tiles, (output pixels of a row, vectors of output channels), the first that
# a layer's output rows are wide enough for: 28 and 21 accumulators of 32 registers.  On
# ResNet-50's layers at batch 8 (AVX-512, 2 cores) 14 x 2 ran the 3x3 layers at 14 to 56 at
# 239-261 GFLOP/s, against 218-222 for the pixel-lane kernel, and conv1 at 210 against 154;
# 7 x 3 ran 512@7 at 211 against 191 (7 x 4: 191; 14 x 2 wastes half its tile there: 125).
OC_TILES = ((14, 2), (7, 3))

# Output pixels (batch x oh x ow) from which the channel-lane kernel runs by default (`defaults`):
# where packing its weights (a pass over them, which the pixel-lane kernel does not make)
# costs less than it saves.  On ResNet-50's layers (AVX-512, 2 cores) both kernels ran within
# noise of each other at batch 1 (conv1: 12544 pixels); at batch 8 the channel-lane kernel
# was 13-30 % faster on all but the 3x3 stride 2 (5 % slower), yet 512@7 (392 pixels) spent
# 1.1-1.3 ms packing 9.4 MB of weights to save 1.9 ms and lost (10.3 against 9.7 ms a call),
# while 256@14 (1568 pixels) gained 0.8 ms.
OC_MIN_PIXELS = 1024

# ... and with one image it does not run at all: there the two kernels ran within noise of
# each other forward (conv1, 64@56) and the pixel-lane kernel 7-15 % faster in the gradients
# of the input at 64@56 and 128@28, unless the filter had to be copied anyway (see `_oc_tile`).
OC_MIN_IMAGES = 2

# The channel-lane kernel's last block of output channels may compute this many zero channels
# per real one at most (a group of 40 channels in blocks of 32 would compute 64).
OC_MAX_WASTE = 0.5


def _plane_bound(spec) -> int:
    """At least the elements of one channel's phase planes (the padded image, each side
    rounded up to whole strides)."""
    pt, pb, pl, pr = spec.pads
    return (spec.h + pt + pb + spec.sh) * (spec.w + pl + pr + spec.sw)


def _oc_tile(spec, p, copied_bytes=0) -> tuple[int, int] | None:
    """The channel-lane tile ``(pixels, vectors)`` for ``spec`` under parameters ``p``, or None
    where the pixel-lane kernel runs: off (``oc_min`` 0), too few images or output pixels to
    pay for the pack (`OC_MIN_IMAGES`, ``oc_min``), an image's input larger than
    ``oc_input_bytes``, rows narrower than every tile, or groups whose channels would leave
    most of a block zero.

    ``copied_bytes``: a filter the pixel-lane kernel would have to copy (a gradient's
    swapped filter, built by `convbench_kernels.directions.SwappedFilter.array`).  Where it
    is at least half the L2 that copy is a pass through memory, as the pack is: the pack
    then costs nothing more, and the channel-lane kernel runs whatever the pixels (3x3
    256@14 and 512@7 at batch 1: 5-10 % faster a call; 128@28's 0.6 MB: 10 % slower).
    """
    pays = spec.n >= OC_MIN_IMAGES and spec.n * spec.oh * spec.ow >= p["oc_min"]
    free = 2 * copied_bytes >= (current().l2_bytes or 1 << 20)
    if not p["oc_min"] or not (pays or free):
        return None
    if spec.cg * _plane_bound(spec) * spec.itemsize > p["oc_input_bytes"]:
        return None
    lanes = current().lanes(np.dtype(spec.dtype).itemsize)
    for ct, kv in OC_TILES:
        cols = kv * lanes
        if spec.ow >= ct and -(-spec.kg // cols) * cols <= (1 + OC_MAX_WASTE) * spec.kg:
            return ct, kv
    return None


@njit(parallel=True, cache=True)
def _pack_oc(w, groups, taps, swapped, wp):
    """``wp[g, kb, ci, t, j] = f[g*kg + kb*cols + j, ci, t]`` (zero past kg): the filter ``f``
    as contiguous vectors of output channels, for `_direct_oc`.  ``f`` is ``w`` (k, cg,
    r*s) with the taps ``taps`` picked or, ``swapped``, the filter that
    `convbench_kernels.directions.SwappedFilter` describes (``w`` its source): ``f[g*kg +
    kk, ci, t] = w[g*cg + ci, kk, taps[t]]``, read here in the same pass.  One work item per
    (group, block)."""
    kblocks = wp.shape[1]
    kg = w.shape[1] if swapped else w.shape[0] // groups
    for item in prange(groups * kblocks):
        g, kb = item // kblocks, item % kblocks
        _pack_block(w, g, kb, kg, taps, swapped, wp[g, kb])


@njit(cache=True, inline="always")
def _pack_block(w, g, kb, kg, taps, swapped, dst):
    """Block ``kb`` of group ``g`` of `_pack_oc`'s ``wp`` into ``dst`` (cg, taps, cols)."""
    cg, nt, cols = dst.shape
    k0 = kb * cols
    real = min(cols, kg - k0)
    for ci in range(cg):
        src = w[g * cg + ci, k0:k0 + real] if swapped else w[g * kg + k0:g * kg + k0 + real, ci]
        d = dst[ci]
        for t in range(nt):
            tap = taps[t]
            dt = d[t]
            for j in range(real):
                dt[j] = src[j, tap]
            dt[real:] = 0


@njit(parallel=True, cache=True, fastmath={"contract"})
def _direct_oc(xq, wp, toff, wq, out, pixels, vecs, lanes):
    """The convolution with output channels in the vector lanes: each tile is ``ct`` pixels
    of one output row by ``kv`` vectors of output channels, and each (channel, tap) step
    loads ``kv`` weight vectors and broadcasts each of the ``ct`` input pixels into them
    (`fma_tile`, its roles swapped: the broadcasts are the input).  The tile covers only
    real pixels of a row (the last one moved back to end at the row's end), where the
    pixel-lane kernel computes whole vectors of the flattened grid (7 x 7 outputs on a
    9-wide grid: 64 computed for 49); with AVX-512 each broadcast is a memory operand of its
    multiply-add.  Sums in the same order as `_direct` (channels, then taps): the same
    result to the bit.

    ``xq``, ``toff``, ``wq``, ``out`` as for `_direct`; ``wp`` the weights packed by
    `_pack_oc`; ``pixels``, ``vecs``, ``lanes``: tokens of ``ct``, ``kv`` and the vector
    width.  Work item: (image, group, channel block, output row, pixel tile), pixel tiles
    innermost, so that a thread's consecutive items reuse one block's weights from L2.
    """
    n = xq.shape[0]
    groups, kblocks = wp.shape[0], wp.shape[1]
    oh, ow = out.shape[2], out.shape[3]
    xtiles = -(-ow // len(pixels))
    for item in prange(n * groups * kblocks * oh * xtiles):
        xt = item % xtiles
        rest = item // xtiles
        y = rest % oh
        rest //= oh
        kb = rest % kblocks
        rest //= kblocks
        _oc_tile_at(xq, wp[rest % groups, kb], toff, wq, out, rest // groups, rest % groups,
                    kb, y, xt, pixels, vecs, lanes)


@njit(parallel=True, cache=True, fastmath={"contract"})
def _direct_oc_packing(xq, w, groups, taps, swapped, toff, wq, out, wbuf, pixels, vecs,
                       lanes):
    """`_direct_oc` packing its weights as it goes: each thread takes whole jobs, (group,
    channel block), packs the job's block (`_pack_block`, from ``w`` as `_pack_oc` reads
    it) into its own ``wbuf[t]`` (cg, taps, cols) and computes every tile of it.  The jobs
    that would not share evenly among the threads (11 blocks of 48 channels for 2 threads)
    are each split by output rows (of all images) among the threads, each packing the block.

    For a filter that must be packed on every call (a gradient's swapped filter, ``w`` its
    source) and does not fit the caches: the pack reads the filter once, as `_pack_oc` does,
    but writes blocks that stay in the threads' L2 for their tiles, where `_pack_oc` writes
    the whole packed filter to memory for the multiply to read back (3x3 512 -> 512 at 7 x 7,
    9.4 MB: a pass each way through memory)."""
    n = xq.shape[0]
    threads = wbuf.shape[0]
    cols = wbuf.shape[3]
    oh, ow = out.shape[2], out.shape[3]
    kg = out.shape[1] // groups
    kblocks = -(-kg // cols)
    xtiles = -(-ow // len(pixels))
    rows = n * oh
    jobs = groups * kblocks
    whole = jobs - jobs % threads  # jobs run whole; each of the rest in `threads` parts
    for t in prange(threads):
        block = wbuf[t]
        for unit in range(t, whole + (jobs - whole) * threads, threads):
            job, part, parts = unit, 0, 1
            if unit >= whole:
                job, part = divmod(unit - whole, threads)
                job, parts = whole + job, threads
            g, kb = job // kblocks, job % kblocks
            _pack_block(w, g, kb, kg, taps, swapped, block)
            for row in range(part * rows // parts, (part + 1) * rows // parts):
                for xt in range(xtiles):
                    _oc_tile_at(xq, block, toff, wq, out, row // oh, g, kb, row % oh, xt,
                                pixels, vecs, lanes)


@njit(cache=True, inline="always")
def _oc_tile_at(xq, block, toff, wq, out, b, g, kb, y, xt, pixels, vecs, lanes):
    """One tile of `_direct_oc`: pixel tile ``xt`` of output row ``y`` of image ``b`` by
    output-channel block ``kb`` of group ``g``, whose packed weights are ``block`` (cg,
    taps, cols)."""
    ct = len(pixels)
    c, L = xq.shape[1], xq.shape[2]
    cg, taps, cols = block.shape
    k, oh, ow = out.shape[1], out.shape[2], out.shape[3]
    groups = c // cg
    kg = k // groups
    xf = xq.reshape(-1)
    wf = block.reshape(-1)
    of = out.reshape(-1)
    x0 = min(xt * ct, ow - ct)
    acc = stack_tile(xq, pixels, vecs, lanes)  # (ct, cols)
    for r in range(ct):
        for j in range(acc.shape[1]):
            acc[r, j] = 0
    for ci in range(cg):
        xc = ((b * c + g * cg + ci) * L) + y * wq + x0
        wc = ci * taps * cols
        for t in range(taps):
            fma_tile(acc, wf, U(wc + t * cols), xf, xc + toff[t], 1, pixels, vecs, lanes)
    kcount = min(cols, kg - kb * cols)
    o = ((b * k + g * kg + kb * cols) * oh + y) * ow + x0
    for r in range(ct):
        for j in range(acc.shape[1]):
            if j < kcount:
                of[o + j * oh * ow + r] = acc[r, j]


def _chunk(toff, tile, itemsize, chunk_bytes, cg) -> int:
    """Input channels per chunk (`_direct`'s ``cb``): as many as keep the chunk's input tile
    (per channel, the union of the taps' reads ``[toff[t], toff[t] + tile)``) within
    ``chunk_bytes``; at least one, at most ``cg`` (one chunk: no partial sums).

    A work item runs all its output-channel blocks over the same input tile; with every
    channel at once that tile outgrows L1 (3x3 128@28 with 4 x 3 AVX2 tiles: ~50 KiB; 1x1
    1024@14 with 8 x 3 AVX-512 tiles: 192 KiB) and each block reloads it from L2.
    ``chunk_bytes`` 0: one chunk.
    """
    if chunk_bytes <= 0:
        return int(cg)
    starts = np.sort(toff)
    covered, end = 0, -1
    for a in starts:  # union of the intervals [a, a + tile)
        covered += a + tile - max(a, end) if a + tile > end else 0
        end = max(end, a + tile)
    return int(min(cg, max(1, chunk_bytes // (covered * itemsize))))


# Output-channel groups are added until a layer has this many work items per thread (3x3 512@7
# has two pixel blocks of 8 x 2 AVX-512 tiles: one item per thread without groups).
ITEMS_PER_THREAD = 8


def _kgroups(spec, tile, kblocks, threads) -> int:
    """Output-channel block groups per pixel block: the fewest that give `ITEMS_PER_THREAD`
    items per thread (each group reads the input tile again)."""
    items = spec.n * spec.groups * -(-_grid_pixels(spec) // tile)
    return int(min(kblocks, max(1, -(-ITEMS_PER_THREAD * threads // items))))


def workspace(spec, params=None):
    """Bytes `prepare` and one call allocate: the phase-split padded input, where kg is not
    a multiple of kb the weights padded to whole blocks (they are otherwise read in place),
    and with several channel chunks the tiles' partial sums; for the channel-lane kernel the
    packed weights instead."""
    p, tile = _params(spec, params)
    xq = spec.n * spec.c * (_plane_bound(spec) + tile + spec.r * spec.s)
    oc = _oc_tile(spec, p)
    taps = spec.groups * spec.cg * spec.r * spec.s
    if oc:
        cols = oc[1] * current().lanes(spec.itemsize)
        return spec.itemsize * (xq + -(-spec.kg // cols) * cols * taps)
    kb = p["kb"]
    kblocks = -(-spec.kg // kb)
    weights = bool(spec.kg % kb) * kblocks * kb * taps
    toff = _geometry(spec.n, spec.c, spec.h, spec.w, spec.r, spec.s, spec.sh, spec.sw, spec.dh,
                     spec.dw, spec.pads, spec.oh, tile)[3]
    part = 0
    if _chunk(toff, tile, spec.itemsize, p["chunk_bytes"], spec.cg) < spec.cg:
        part = _partial_sums(spec, tile, kblocks, kb)
    return spec.itemsize * (weights + xq + part)


@functools.lru_cache(maxsize=256)
def _geometry(n, c, h, w, r, s, sh, sw, dh, dw, pads, oh, tile):
    """Plane sizes, tap offsets and tile bounds of a layer shape: ``(hq, wq, ps, toff, tile,
    p_last, length, nb)``, ``length`` the workspace length per channel (0: the input is read
    in place).

    Cached: building them in Python (49 taps for conv1) would add to every call that
    prepares the layer each time (`convbench.conv2d`).  ``toff`` is read only.
    """
    pt, pb, pl, pr = pads
    hq = -(-(h + pt + pb) // sh)
    wq = -(-(w + pl + pr) // sw)
    ps = hq * wq  # plane stride
    # tap (i, j) reads plane (i*dh % sh, j*dw % sw) shifted by (i*dh // sh, j*dw // sw)
    offsets = [((i * dh % sh) * sw + j * dw % sw) * ps + (i * dh // sh) * wq + j * dw // sw
               for i in range(r) for j in range(s)]
    toff = np.array(offsets, dtype=np.intp)
    toff.flags.writeable = False
    npix = oh * wq
    if r * s == 1 and sh * sw == 1 and not any(pads) and npix >= tile:
        # a 1x1 stride-1 unpadded layer reads the input in place: no copy; its last tile is
        # moved back so as not to read past the array
        return hq, wq, ps, toff, tile, npix - tile, 0, 1
    p_last = (npix - 1) // tile * tile
    reach = p_last + tile + max(offsets)  # end of the last tile's reads
    # enough copy items for 2 threads when there are few channels (conv1: 3)
    nb = max(1, min(hq, -(-16 // (n * c))))
    return hq, wq, ps, toff, tile, p_last, max(sh * sw * ps, reach), nb


def prepare(w, spec, params=None):
    """View the weights in blocks, take the workspace, and return ``compute(x, out)``.

    Parameters
    ----------
    w : ndarray (k, c // groups, r, s), or SwappedFilter
        The filters, C-contiguous, of dtype ``spec.dtype``; or a gradient's filter described
        (`convbench_kernels.directions.SwappedFilter`, see ``reads_swapped``), which the
        channel-lane kernel packs from the layer's weights directly.
    spec : ConvSpec-like
        The problem.
    params : dict, optional
        ``kb`` and ``nv``, the register tile (`defaults`, `space`); default: the installed
        or target-derived tile.

    Returns
    -------
    callable
        ``compute(x, out)`` writing the convolution of ``x`` (n, c, h, w) into ``out``
        (n, k, oh, ow); ``compute.params`` the tile it runs.  It reads ``w`` in place:
        changing ``w`` changes later results, as with a framework's layer.
    """
    p, tile = _params(spec, params)
    swapped = isinstance(w, SwappedFilter)
    oc = _oc_tile(spec, p, swapped and math.prod(w.shape) * spec.itemsize)
    if swapped and not oc:
        w = w.array()
    geometry = _geometry(spec.n, spec.c, spec.h, spec.w, spec.r, spec.s, spec.sh, spec.sw,
                         spec.dh, spec.dw, spec.pads, spec.oh, oc[0] if oc else tile)
    if oc:
        multiply = _channel_lanes(w, spec, oc, geometry)
    else:
        multiply = _pixel_lanes(w, spec, p, geometry)
    compute = _on_input(spec, geometry, multiply)
    compute.params = p
    return compute


# `convbench_kernels.directions` hands `prepare` a gradient's filter undone (a SwappedFilter):
# the channel-lane kernel then packs it from the layer's weights in one pass, where building
# the filter and packing it made two (3x3 512@7: 0.9 ms each).
prepare.reads_swapped = True


def _pixel_lanes(w, spec, p, geometry):
    """``multiply(xq, out)`` by `_direct`, the weights read in place."""
    dtype = np.dtype(spec.dtype)
    KB = p["kb"]
    groups, cg, kg, r, s = spec.groups, spec.cg, spec.kg, spec.r, spec.s
    hq, wq, ps, toff, tile, p_last, length, nb = geometry
    tokens = (token(KB), token(p["nv"]), token(tile // p["nv"]))
    kblocks = -(-kg // KB)
    wk = w.reshape(groups, kg, cg, r * s)
    if kg % KB:
        # zero output channels complete the last block
        wk = pooled_empty((groups, kblocks * KB, cg, r * s), dtype)
        wk[:, :kg] = w.reshape(groups, kg, cg, r * s)
        wk[:, kg:] = 0
    # the weights read in place as (groups, kblocks, KB, cg, taps): a copy to a layout with
    # KB contiguous (a parallel reorder into a reused buffer) made the call slower on every
    # ResNet-50 layer (3x3 s2 128@56: 12 %, 512@7: 70 %) for a compute at most 3% faster
    wt = wk.reshape(groups, kblocks, KB, cg, r * s)
    cb = _chunk(toff, tile, dtype.itemsize, p["chunk_bytes"], cg)
    kgroups = _kgroups(spec, tile, kblocks, numba.get_num_threads())
    part = np.empty(0, dtype)
    if cb < cg:
        part = pooled_empty(_partial_sums(spec, tile, kblocks, KB), dtype)

    def multiply(xq, out):
        _direct(xq, wt, toff, wq, p_last, out, part, cb, kgroups, *tokens)

    return multiply


def _channel_lanes(w, spec, tile, geometry):
    """``multiply(xq, out)`` by `_direct_oc`, the weights (an array, or a `SwappedFilter`)
    packed now (`_pack_oc`), or by `_direct_oc_packing` for a swapped filter that
    `_packs_in_jobs`."""
    dtype = np.dtype(spec.dtype)
    ct, kv = tile
    lanes = current().lanes(dtype.itemsize)
    cols = kv * lanes
    toff, wq = geometry[3], geometry[1]
    tokens = (token(ct), token(kv), token(lanes))
    swapped = isinstance(w, SwappedFilter)
    if swapped and _packs_in_jobs(w, dtype.itemsize):
        threads = numba.get_num_threads()
        wbuf = pooled_empty((threads, spec.cg, spec.r * spec.s, cols), dtype)

        def multiply(xq, out):
            _direct_oc_packing(xq, w.source, spec.groups, w.taps, True, toff, wq, out, wbuf,
                               *tokens)

        return multiply
    wp = pooled_empty((spec.groups, -(-spec.kg // cols), spec.cg, spec.r * spec.s, cols), dtype)
    if swapped:
        _pack_oc(w.source, spec.groups, w.taps, True, wp)
    else:
        _pack_oc(w.reshape(spec.k, spec.cg, spec.r * spec.s), spec.groups,
                 np.arange(spec.r * spec.s), False, wp)

    def multiply(xq, out):
        _direct_oc(xq, wp, toff, wq, out, *tokens)

    return multiply


def _packs_in_jobs(w: SwappedFilter, itemsize: int) -> bool:
    """Whether a gradient's swapped filter is packed block by block inside the multiply's
    jobs (`_direct_oc_packing`) rather than whole before it (`_pack_oc`): where the filter
    is larger than a core's L2, so that the packed filter would go to memory and back.

    Per call, input gradient (AVX-512, 2 cores, ms, whole filter packed first -> in the
    jobs): 3x3 512 -> 512 at 7 x 7 (9.4 MB) 2.0 -> 1.66 at batch 1 and 9.8 -> 8.2 at batch
    8, 256 -> 256 at 14 x 14 (2.4 MB) 1.18 -> 1.14 and 7.6 -> 7.4; below the L2 the jobs
    lost: 1x1 256 -> 1024 at 14 x 14 (1 MB) 4.8 -> 5.6 and 128 -> 128 at 28 x 28 7.5 -> 7.9
    at batch 8 (every block packed by one thread, none shared)."""
    return math.prod(w.shape) * itemsize > (current().l2_bytes or 1 << 20)


def _on_input(spec, geometry, multiply):
    """``compute(x, out)``: ``multiply`` on the phase-split padded input (a "pad" phase, then
    a "multiply" phase), or on ``x`` itself where `_geometry` reads it in place."""
    hq, wq, ps, toff, tile, p_last, length, nb = geometry
    if not length:
        npix = spec.oh * wq

        def compute(x, out):
            multiply(x.reshape(x.shape[0], x.shape[1], npix), out)

        return compute

    pt, pl, sh, sw = spec.pads[0], spec.pads[2], spec.sh, spec.sw
    xq = pooled_empty((spec.n, spec.c, length), spec.dtype)
    xq[:, :, sh * sw * ps:] = 0  # the tail that _phase_split leaves alone

    def pad(x, out):
        _phase_split(x, pt, pl, sh, sw, hq, wq, ps, nb, xq)

    return with_phases(("pad", pad), ("multiply", lambda x, out: multiply(xq, out)))
