"""The direct weight gradient on the GPU: one block per (output channel, input channel) pair.

``dw[k, c, i, j] = sum_{b,p,q} dy[b, k, p, q] * x[b, g*cg + c, p*sh - pt + i*dh, q*sw - pl +
j*dw]`` (zero outside x), ``g`` the group of ``k``.  Each block owns one (k, c) pair and walks
its r x s taps; for a tap, its threads split the n*oh*ow products (consecutive threads on
consecutive output columns: coalesced reads of dy, and of x at stride 1) and a shared-memory
tree sums their partial sums.  So the grid has k * c/groups blocks whatever the image size
(4096 on a 64 -> 64 layer), and a 1x1 layer's gradient is as parallel as a 7x7's.

This is the CUDA families' weight gradient: the others prepare their filters on the host,
and in this direction the filter is ``dy``, already on the device.
"""

from functools import cache

import numpy as np
from numba import cuda

from convbench_kernels.contract import every_problem

supports = every_problem

#: Threads per block: a power of two (the tree reduction halves it).
THREADS = 256


@cache
def _kernel(dtype):
    """The weight-gradient kernel for ``dtype`` (sums in that dtype)."""
    dt = np.dtype(dtype).type

    @cuda.jit
    def weight_grad(x, dy, groups, sh, sw, pt, pl, dh, dw_, dw):
        """One block per (k, c) pair of ``dw`` (k, cg, r, s); see the module docstring."""
        part = cuda.shared.array(THREADS, dt)
        pair = cuda.blockIdx.x
        t = cuda.threadIdx.x
        k_all, cg, r, s = dw.shape[0], dw.shape[1], dw.shape[2], dw.shape[3]
        n, h, w = x.shape[0], x.shape[2], x.shape[3]
        oh, ow = dy.shape[2], dy.shape[3]
        k = pair // cg
        c = (k // (k_all // groups)) * cg + pair % cg
        per_image = oh * ow
        total = n * per_image
        for i in range(r):
            for j in range(s):
                acc = dt(0)
                for e in range(t, total, THREADS):
                    b = e // per_image
                    rest = e - b * per_image
                    p = rest // ow
                    q = rest - p * ow
                    y = p * sh - pt + i * dh
                    xx = q * sw - pl + j * dw_
                    if 0 <= y < h and 0 <= xx < w:
                        acc += dy[b, k, p, q] * x[b, c, y, xx]
                part[t] = acc
                cuda.syncthreads()
                half = THREADS // 2
                while half > 0:
                    if t < half:
                        part[t] += part[t + half]
                    cuda.syncthreads()
                    half //= 2
                if t == 0:
                    dw[k, pair % cg, i, j] = part[0]
                cuda.syncthreads()

    return weight_grad


def workspace(spec):
    """Nothing beyond the operands and the result."""
    return 0


def prepare(x, spec):
    """``compute(dy, dw)`` of the weight gradient; ``x`` (host) is copied to the device once,
    where a training step has it already."""
    x = cuda.to_device(np.ascontiguousarray(x, dtype=spec.dtype))
    kernel = _kernel(spec.dtype)
    pt, _, pl, _ = spec.pads
    launch = (spec.k * spec.cg, THREADS)
    args = (spec.groups, spec.sh, spec.sw, pt, pl, spec.dh, spec.dw)

    def compute(dy, dw):
        kernel[launch](x, dy, *args, dw)

    return compute
