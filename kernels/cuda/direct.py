"""Direct convolution on the GPU: one thread per output pixel and block of output channels.

Kernel
------
A thread computes output pixel ``(y, xo)`` of image ``b`` for the ``KB`` output channels of
one block of its group, accumulating ``cg*r*s`` products per channel in registers (a local
array of ``KB`` values, unrolled): each input value it loads feeds ``KB`` fused
multiply-adds.  Taps that fall in the padding are skipped by bounds checks on the input row
and column, so the input is read in place (no padded copy).

Work items ``(b, g, channel block, pixel)`` are flattened with the pixel innermost:
consecutive threads of a warp read consecutive (stride-``sw``) input pixels and write
consecutive output pixels (coalesced), and share their channel block, so that their weight
loads are one broadcast address.  1-D grid of ``THREADS`` threads per block (fewer, down to a
warp, for a layer that would not give every SM 2 blocks), at most
``MAX_BLOCKS`` blocks, threads looping in grid strides over the rest.

The weights are reordered once, on the host, to ``wt`` (groups, kblocks, cg, r, s, KB),
zero-padded past ``kg`` so that the last block of a group reads no other group's weights; the
padded channels are computed and not stored.  ``KB`` is 4 when a group has at least 4
output channels, else 1 (depthwise: one output per thread, nothing wasted).

Supported problems
------------------
Every valid problem (`convbench_kernels.contract.every_problem`).

Error
-----
Each output is one sequential sum of ``cg*r*s`` products in the input dtype: ~1e-6 relative
in float32 and ~1e-16 in float64 against the float64 oracle.
"""

from functools import cache

import numpy as np
from numba import cuda

from convbench_kernels.contract import every_problem as supports
from convbench_kernels.cuda.launch import grid_1d, index_type, launcher, splitter

__all__ = ["supports", "prepare", "workspace", "channel_block", "launches"]

THREADS = 128  # threads per block
MAX_BLOCKS = 1 << 16  # blocks at most (threads then loop in grid strides)


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
    def direct_kernel(x, wt, sh, sw, dh, dw, pt, pl, out):
        h, w = x.shape[2], x.shape[3]
        groups, kblocks, cg, r, s = wt.shape[0], wt.shape[1], wt.shape[2], wt.shape[3], wt.shape[4]
        n, k, oh, ow = out.shape[0], out.shape[1], out.shape[2], out.shape[3]
        kg = k // groups
        npix = oh * ow
        acc = cuda.local.array(kb, out.dtype)
        for item in range(cuda.grid(1), n * groups * kblocks * npix, cuda.gridsize(1)):
            rest, p = split(item, npix)
            rest, blk = split(rest, kblocks)
            b, g = split(rest, groups)
            y, xo = split(p, ow)
            iy0 = y * sh - pt
            ix0 = xo * sw - pl
            for kk in range(kb):
                acc[kk] = 0
            for ci in range(cg):
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
                    out[b, g * kg + ko, y, xo] = acc[kk]

    return direct_kernel


def _blocked_weights(w, spec, kb):
    """``w`` (k, cg, r, s) as (groups, kblocks, cg, r, s, kb), zero past kg."""
    groups, kg = spec.groups, spec.kg
    kblocks = -(-kg // kb)
    wt = np.zeros((groups, kblocks * kb, spec.cg, spec.r, spec.s), dtype=spec.dtype)
    wt[:, :kg] = np.asarray(w).reshape(groups, kg, spec.cg, spec.r, spec.s)
    wt = wt.reshape(groups, kblocks, kb, spec.cg, spec.r, spec.s).transpose(0, 1, 3, 4, 5, 2)
    return np.ascontiguousarray(wt)


def launches(spec, sms=None):
    """``[(kernel, grid, block)]``: the one launch of a call on ``spec``."""
    return [("direct", *grid_1d(_items(spec), THREADS, sms, MAX_BLOCKS))]


def _items(spec):
    """Work items: (image, group, channel block, output pixel)."""
    return spec.n * spec.groups * -(-spec.kg // channel_block(spec.kg)) * spec.oh * spec.ow


def workspace(spec):
    """Device bytes `prepare` allocates: the blocked, zero-padded weights."""
    kb = channel_block(spec.kg)
    return spec.groups * -(-spec.kg // kb) * kb * spec.cg * spec.r * spec.s * spec.itemsize


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
    (_, grid, block), = launches(spec)
    launch = launcher(_kernel(kb, index_type(_items(spec))), grid, block)
    args = (spec.sh, spec.sw, spec.dh, spec.dw, pt, pl)

    def compute(x, out):
        launch(x, wt, *args, out)

    return compute
