"""Direct convolution on the GPU: one thread per output pixel and block of output channels.

Kernel
------
A thread computes output pixel ``(y, xo)`` of image ``b`` for the ``KB`` output channels of
one block of its group, accumulating ``cg*r*s`` products per channel in registers (a local
array of ``KB`` values, unrolled): each input value it loads feeds ``KB`` fused
multiply-adds.  Taps that fall in the padding are skipped by bounds checks on the input row
and column, so the input is read in place (no padded copy).

Work items ``(part, b, g, channel block, pixel)`` are flattened with the pixel innermost:
consecutive threads of a warp read consecutive (stride-``sw``) input pixels and write
consecutive output pixels (coalesced), and share their channel block, so that their weight
loads are one broadcast address.  1-D grid of ``THREADS`` threads per block (fewer, down to a
warp, for a layer that would not give every SM 2 blocks), at most
``MAX_BLOCKS`` blocks, threads looping in grid strides over the rest.

A layer with few outputs (ResNet-50's 512 -> 512 3x3 at 7x7 and batch 1: 6272 items of 4
channels, 49 full blocks) splits its sums over the input channels into ``parts`` (`_parts`):
as many as bring the items to `BLOCKS_PER_SM` blocks of ``THREADS`` per SM, each part still
summing at least `MIN_PART_PRODUCTS` products.  Each part writes its partial sums to a
workspace array, which a second kernel adds up in part order into ``out`` (so that a result
does not depend on the order blocks run in, as float atomics would make it).

The weights are reordered once, on the host, to ``wt`` (groups, kblocks, cg, r, s, KB),
zero-padded past ``kg`` so that the last block of a group reads no other group's weights; the
padded channels are computed and not stored.  ``KB`` is 4 when a group has at least 4
output channels, else 1 (depthwise: one output per thread, nothing wasted).

Supported problems
------------------
Every valid problem (`convbench_kernels.contract.every_problem`).

Error
-----
Each output is a sequential sum of ``cg*r*s`` products in the input dtype (in ``parts``
sequential pieces, added in order): ~1e-6 relative
in float32 and ~1e-16 in float64 against the float64 oracle.
"""

from functools import cache

import numpy as np
from numba import cuda

from convbench_kernels.contract import every_problem as supports
from convbench_kernels.cuda.launch import grid_1d, index_type, launcher, min_blocks, splitter

__all__ = ["supports", "prepare", "workspace", "channel_block", "launches"]

THREADS = 128  # threads per block
MAX_BLOCKS = 1 << 16  # blocks at most (threads then loop in grid strides)
MIN_PART_PRODUCTS = 64  # products a part of a split sum adds up, at least


def channel_block(kg):
    """Output channels per thread: 4, or 1 for groups of fewer than 4 output channels."""
    return 4 if kg >= 4 else 1


@cache
def _kernel(kb, ix):
    """The direct kernel computing ``kb`` output channels per thread (a compile-time
    constant, so that the accumulators stay in registers), splitting its flat work index in
    ``ix`` (`convbench_kernels.cuda.launch.index_type`)."""
    split = splitter(ix)

    @cuda.jit
    def direct_kernel(x, wt, sh, sw, dh, dw, pt, pl, per_part, out):
        h, w = x.shape[2], x.shape[3]
        groups, kblocks, cg, r, s = wt.shape[0], wt.shape[1], wt.shape[2], wt.shape[3], wt.shape[4]
        parts, n, k, oh, ow = out.shape[0], out.shape[1], out.shape[2], out.shape[3], out.shape[4]
        kg = k // groups
        npix = oh * ow
        acc = cuda.local.array(kb, out.dtype)
        for item in range(cuda.grid(1), parts * n * groups * kblocks * npix, cuda.gridsize(1)):
            rest, p = split(item, npix)
            rest, blk = split(rest, kblocks)
            rest, g = split(rest, groups)
            part, b = split(rest, n)
            y, xo = split(p, ow)
            iy0 = y * sh - pt
            ix0 = xo * sw - pl
            for kk in range(kb):
                acc[kk] = 0
            for ci in range(part * per_part, min(cg, part * per_part + per_part)):
                ch = g * cg + ci
                for i in range(r):
                    iy = iy0 + i * dh
                    if 0 <= iy < h:
                        for j in range(s):
                            ix = ix0 + j * dw
                            if 0 <= ix < w:
                                xv = x[b, ch, iy, ix]
                                for kk in range(kb):
                                    acc[kk] += xv * wt[g, blk, ci, i, j, kk]
            for kk in range(kb):
                ko = blk * kb + kk
                if ko < kg:
                    out[part, b, g * kg + ko, y, xo] = acc[kk]

    return direct_kernel


@cuda.jit
def _sum_parts(parts, out):
    """``out[i] = parts[0, i] + parts[1, i] + ...``, in that order, over the flat outputs."""
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        total = parts[0, i]
        for p in range(1, parts.shape[0]):
            total += parts[p, i]
        out[i] = total


def _blocked_weights(w, spec, kb):
    """``w`` (k, cg, r, s) as (groups, kblocks, cg, r, s, kb), zero past kg."""
    groups, kg = spec.groups, spec.kg
    kblocks = -(-kg // kb)
    wt = np.zeros((groups, kblocks * kb, spec.cg, spec.r, spec.s), dtype=spec.dtype)
    wt[:, :kg] = np.asarray(w).reshape(groups, kg, spec.cg, spec.r, spec.s)
    wt = wt.reshape(groups, kblocks, kb, spec.cg, spec.r, spec.s).transpose(0, 1, 3, 4, 5, 2)
    return np.ascontiguousarray(wt)


def launches(spec, sms=None):
    """``[(kernel, grid, block)]``: the launches of a call on ``spec`` (the direct kernel,
    then the sum of its parts when it splits its sums)."""
    parts = _parts(spec, sms)
    out = [("direct", *grid_1d(parts * _items(spec), THREADS, sms, MAX_BLOCKS))]
    if parts > 1:
        out.append(("sum_parts", *grid_1d(_outputs(spec), THREADS, sms, MAX_BLOCKS)))
    return out


def _items(spec):
    """Work items of one part: (image, group, channel block, output pixel)."""
    return spec.n * spec.groups * -(-spec.kg // channel_block(spec.kg)) * spec.oh * spec.ow


def _outputs(spec):
    """Elements of the output."""
    return spec.n * spec.k * spec.oh * spec.ow


def _parts(spec, sms=None):
    """Input-channel parts each output's sum is split into: the fewest that give
    ``min_blocks(sms)`` blocks of `THREADS`, with at least `MIN_PART_PRODUCTS` products a
    part and no empty part; 1 (no split) when the items fill the GPU already."""
    want = -(-min_blocks(sms) * THREADS // _items(spec))
    parts = max(1, min(want, spec.cg * spec.r * spec.s // MIN_PART_PRODUCTS, spec.cg))
    return -(-spec.cg // _per_part(spec, parts))


def _per_part(spec, parts):
    """Input channels of each part but the last."""
    return -(-spec.cg // parts)


def workspace(spec):
    """Device bytes `prepare` allocates: the blocked, zero-padded weights, and the partial
    sums of a split call."""
    kb = channel_block(spec.kg)
    weights = spec.groups * -(-spec.kg // kb) * kb * spec.cg * spec.r * spec.s
    parts = _parts(spec)
    return (weights + (parts * _outputs(spec) if parts > 1 else 0)) * spec.itemsize


def prepare(w, spec):
    """Reorder the weights and copy them to the device; return ``compute(x, out)``.

    Parameters
    ----------
    w : ndarray (k, cg, r, s)
        Host weights, C-contiguous, of dtype ``spec.dtype``.
    spec : ConvSpec-like
        The problem.

    Returns
    -------
    compute : callable
        ``compute(x, out)`` launches the kernel writing the convolution of the device array
        ``x`` (n, c, h, w) into the device array ``out`` (n, k, oh, ow); no synchronization.
    """
    kb = channel_block(spec.kg)
    wt = cuda.to_device(_blocked_weights(w, spec, kb))
    pt, _, pl, _ = spec.pads
    parts = _parts(spec)
    (_, grid, block), *reduce = launches(spec)
    launch = launcher(_kernel(kb, index_type(parts * _items(spec))), grid, block)
    args = (spec.sh, spec.sw, spec.dh, spec.dw, pt, pl, _per_part(spec, parts))
    if parts == 1:
        return lambda x, out: launch(x, wt, *args, out.reshape((1, *out.shape)))
    sums = cuda.device_array((parts, spec.n, spec.k, spec.oh, spec.ow), dtype=spec.dtype)
    flat_sums = sums.reshape((parts, _outputs(spec)))
    (_, grid, block), = reduce
    add = launcher(_sum_parts, grid, block)

    def compute(x, out):
        launch(x, wt, *args, sums)
        add(flat_sums, out.reshape((_outputs(spec),)))

    return compute
