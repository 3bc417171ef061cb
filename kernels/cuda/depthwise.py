"""Depthwise convolution on the GPU, and the depthwise-separable operator.

The CUDA twin of `convbench_kernels.cpu.depthwise`: groups == c, channel multiplier m = k // c
(output channel o reads input channel o // m), any filter size, stride, padding and
dilation, float32 and float64.

`prepare`
    `_depthwise` (compiled per dtype by `_depthwise_kernel`): one thread per output
    element, consecutive threads on consecutive output columns (coalesced writes); the
    r * s taps are read straight from ``x`` with bounds checks, so padding costs no copy.
`prepare_separable`
    Depthwise into a device intermediate (n, c*m, oh, ow), then the pointwise 1x1 as a GEMM
    per image, (k, c*m) @ (c*m, oh*ow): one launch of the GEMM (`convbench_kernels.cuda.gemm`)
    batched over the images, the pointwise weights shared by all of them.
"""

from functools import cache

import numpy as np
from numba import cuda

from convbench_kernels.contract import depthwise as supports
from convbench_kernels.contract import separable as supports_separable
from convbench_kernels.contract import separable_weights, with_phases
from convbench_kernels.cuda.gemm import launches as gemm_launches
from convbench_kernels.cuda.gemm import plan
from convbench_kernels.cuda.launch import grid_1d, index_type, launcher, splitter, unflattener

__all__ = ["supports", "prepare", "workspace", "launches", "supports_separable",
           "prepare_separable", "workspace_separable", "launches_separable"]

#: Threads per block of the depthwise kernel.
THREADS = 256


@cache
def _depthwise_kernel(dtype, ix):
    """The depthwise kernel for ``dtype`` (its accumulator stays in that dtype), splitting
    its flat index in ``ix`` (`convbench_kernels.cuda.launch.index_type`)."""
    dt = np.dtype(dtype).type
    split = splitter(ix)
    unflat = unflattener(ix)

    @cuda.jit
    def depthwise(x, wt, mult, sh, sw, pt, pl, dh, dw, out):
        """out[b, o, oy, ox] = sum_ij wt[o, i, j] x[b, o // mult, oy*sh - pt + i*dh,
        ox*sw - pl + j*dw] (zero outside x); one thread per output element."""
        idx = cuda.grid(1)
        n, k, oh, ow = out.shape[0], out.shape[1], out.shape[2], out.shape[3]
        if idx >= n * k * oh * ow:
            return
        h, w = x.shape[2], x.shape[3]
        r, s = wt.shape[1], wt.shape[2]
        b, o, oy, ox = unflat(idx, k, oh, ow)
        ci, _ = split(o, mult)
        y0 = oy * sh - pt
        x0 = ox * sw - pl
        acc = dt(0)
        for i in range(r):
            yy = y0 + i * dh
            if yy >= 0 and yy < h:
                for j in range(s):
                    xx = x0 + j * dw
                    if xx >= 0 and xx < w:
                        acc += wt[o, i, j] * x[b, ci, yy, xx]
        out[b, o, oy, ox] = acc

    return depthwise


def _grid(spec, m, sms=None):
    return grid_1d(spec.n * spec.c * m * spec.oh * spec.ow, THREADS, sms)


def launches(spec, sms=None):
    """``[(kernel, grid, block)]``: the one launch of a depthwise call on ``spec``."""
    return [("depthwise", *_grid(spec, spec.k // spec.c, sms))]


def _pointwise_shapes(spec, m):
    """Shapes of the pointwise GEMM's A, B, C: (k, c*m) @ (n, c*m, oh*ow)."""
    cm, plane = spec.c * m, spec.oh * spec.ow
    return (spec.k, cm), (spec.n, cm, plane), (spec.n, spec.k, plane)


def launches_separable(spec, multiplier=1, sms=None):
    """``[(kernel, grid, block)]``: the launches of a separable call on ``spec`` (the standard
    convolution it replaces) with channel ``multiplier``."""
    return ([("depthwise", *_grid(spec, multiplier, sms))]
            + gemm_launches(_pointwise_shapes(spec, multiplier)[2], sms))


def _launcher(w, spec, m):
    """``run(x, out)`` launching the depthwise kernel with weights w (c*m, 1, r, s) of ``spec``
    (only its n, c, r, s, stride, padding, dilation, oh, ow and dtype are read)."""
    wt = cuda.to_device(np.ascontiguousarray(np.asarray(w, dtype=spec.dtype)
                                             .reshape(spec.c * m, spec.r, spec.s)))
    pt, _, pl, _ = spec.pads
    kernel = _depthwise_kernel(np.dtype(spec.dtype),
                               index_type(spec.n * spec.c * m * spec.oh * spec.ow))
    launch = launcher(kernel, *_grid(spec, m))
    args = (wt, m, spec.sh, spec.sw, pt, pl, spec.dh, spec.dw)

    def run(x, out):
        launch(x, *args, out)

    return run


def workspace(spec):
    """Device bytes `prepare` allocates beyond x and out: the weights."""
    return spec.itemsize * spec.k * spec.r * spec.s


def workspace_separable(spec, multiplier=1):
    """Device bytes `prepare_separable` allocates: both weights and the intermediate."""
    cm = spec.c * multiplier
    return spec.itemsize * (cm * spec.r * spec.s + spec.k * cm
                            + spec.n * cm * spec.oh * spec.ow)


def prepare(w, spec):
    """Copy the weights to the device; returns ``compute(x, out)``.

    Parameters
    ----------
    w : numpy.ndarray (k, 1, r, s), host
        k = c*m; output channel o reads input channel o // m.
    spec : ConvSpec-like with groups == c

    Returns
    -------
    callable
        ``compute(x, out)`` on device arrays; one launch of THREADS threads per block (fewer
        for a small layer: `convbench_kernels.cuda.launch.threads_for`) over
        the n*k*oh*ow output elements, default stream, no synchronization.
    """
    reason = supports(spec)
    if reason:
        raise ValueError(reason)
    return _launcher(w, spec, spec.k // spec.c)


def prepare_separable(ws, spec):
    """Depthwise r x s then pointwise 1x1: the separable replacement of ``spec``.

    Parameters
    ----------
    ws : (w_depthwise, w_pointwise), host arrays
        Shapes (c*m, 1, r, s) and (k, c*m, 1, 1); m = w_depthwise.shape[0] // c.
    spec : ConvSpec-like
        The standard convolution c -> k replaced (groups == 1): its r, s, stride, padding
        and dilation are the depthwise stage's.

    Returns
    -------
    callable
        ``compute(x, out)`` with phases "depthwise" and "pointwise"; the device intermediate
        (n, c*m, oh, ow) is allocated here.
    """
    w_dw, w_pw, m = separable_weights(ws, spec)
    n, c = spec.n, spec.c
    depthwise = _launcher(w_dw, spec, m)
    shapes = _pointwise_shapes(spec, m)
    wp = cuda.to_device(np.ascontiguousarray(np.asarray(w_pw, dtype=spec.dtype)
                                             .reshape(shapes[0])))
    mid = cuda.device_array((n, c * m, spec.oh, spec.ow), dtype=spec.dtype)
    mid3 = mid.reshape(shapes[1])
    pointwise = plan(*shapes)  # wp (2-D) shared by every image

    def depthwise_stage(x, out):
        depthwise(x, mid)

    def pointwise_stage(x, out):
        pointwise(wp, mid3, out.reshape(shapes[2]))

    return with_phases(("depthwise", depthwise_stage), ("pointwise", pointwise_stage))
