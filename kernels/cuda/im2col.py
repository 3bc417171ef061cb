"""im2col + GEMM convolution on the GPU: unfold a chunk of images, then one batched GEMM.

Layout
------
As in the CPU twin (`convbench_kernels.cpu.im2col`): for image ``b`` the column matrix holds, in row
``(ch, i, j)`` (``ch`` over all ``c`` input channels, ``i < r``, ``j < s``) and column
``p = y*ow + xo``, the input pixel ``x[b, ch, y*sh + i*dh - pt, xo*sw + j*dw - pl]`` (zero
where that falls in the padding), so group ``g`` owns the contiguous row slab
``[g*cg*r*s, (g+1)*cg*r*s)``.  The weights, copied once to the device as
``(groups, kg, cg*r*s)``, multiply those slabs: ``out[b, g*kg:(g+1)*kg]`` viewed as
``(kg, oh*ow)`` is ``wmat[g] @ col[b, g]``.

Kernels
-------
``im2col`` (`_im2col_kernel`) writes the column matrices of a chunk of ``nb`` images,
``col`` (nb, c*r*s, oh*ow), one element per thread: consecutive threads take consecutive
output pixels, so the stores are coalesced and the loads are too (strided by ``sw``).  1-D
grid of ``IM2COL_THREADS`` threads per block (fewer for a small layer), at most
``MAX_BLOCKS`` blocks, the threads looping in grid strides over the rest.  Then one launch
of the GEMM (`convbench_kernels.cuda.gemm`, planned in `prepare`) multiplies the whole
chunk: batch ``nb * groups``, A = ``wmat`` shared cyclically (entry ``z % groups``), B =
``col`` viewed (nb*groups, cg*r*s, oh*ow), C = the chunk's ``out`` viewed (nb*groups, kg,
oh*ow).  Chunks hold as many images as fit in ``COL_BUDGET`` bytes of column matrix (at
least one), so a small layer costs two launches per batch, not two per image.

1x1 stride-1 unpadded layers skip the column matrix: the input viewed (n*groups, cg, h*w)
is B, and the layer is a single GEMM launch.

Supported problems
------------------
Every valid problem (`convbench_kernels.contract.every_problem`).

Error
-----
Each output is a sum of ``cg*r*s`` products in the input dtype, accumulated in 16-term panels
by the GEMM: ~1e-6 relative in float32, ~1e-15 in float64, against the float64 oracle.
"""

from functools import cache

import numpy as np
from numba import cuda

from convbench_kernels.contract import every_problem as supports
from convbench_kernels.contract import with_phases
from convbench_kernels.cuda.gemm import launches as gemm_launches
from convbench_kernels.cuda.gemm import plan
from convbench_kernels.cuda.launch import grid_1d, index_type, launcher, splitter

__all__ = ["supports", "prepare", "workspace", "launches"]

IM2COL_THREADS = 256  # threads per block of the unfolding kernel
MAX_BLOCKS = 1 << 16  # blocks of the unfolding kernel at most (threads then loop)
COL_BUDGET = 128 << 20  # bytes of column matrices per chunk of images (at least one image)


@cache
def _im2col_kernel(ix):
    """The unfolding kernel, splitting its flat index in ``ix``
    (`convbench_kernels.cuda.launch.index_type`)."""
    split = splitter(ix)

    @cuda.jit
    def im2col(x, b0, r, s, sh, sw, dh, dw, pt, pl, ow, col):
        """Write the column matrices of images ``b0 .. b0 + col.shape[0]`` of ``x`` into ``col``.

        Parameters
        ----------
        x : device array (n, c, h, w)
        b0 : int
            First image of the chunk.
        r, s, sh, sw, dh, dw, pt, pl, ow : int
            Filter size, stride, dilation, top and left padding, output width.
        col : device array (nb, c*r*s, oh*ow)
            Every element written, padding taps as zeros.
        """
        h, w = x.shape[2], x.shape[3]
        nb, rows, npix = col.shape
        rs = r * s
        for idx in range(cuda.grid(1), nb * rows * npix, cuda.gridsize(1)):
            rest, p = split(idx, npix)
            bb, row = split(rest, rows)
            ch, tap = split(row, rs)
            i, j = split(tap, s)
            y, xo = split(p, ow)
            iy = y * sh + i * dh - pt
            ixx = xo * sw + j * dw - pl
            if 0 <= iy < h and 0 <= ixx < w:
                col[bb, row, p] = x[b0 + bb, ch, iy, ixx]
            else:
                col[bb, row, p] = 0

    return im2col


def _is_pointwise(spec):
    return spec.r == spec.s == 1 and spec.sh == spec.sw == 1 and not any(spec.pads)


def _chunk(spec):
    """Images per column-matrix chunk."""
    per_image = spec.c * spec.r * spec.s * spec.oh * spec.ow * spec.itemsize
    return max(1, min(spec.n, COL_BUDGET // per_image))


def _chunks(spec):
    """``(first image, images)`` of every chunk (one chunk of all images for a 1x1 layer)."""
    nb = spec.n if _is_pointwise(spec) else _chunk(spec)
    return [(b0, min(nb, spec.n - b0)) for b0 in range(0, spec.n, nb)]


def _gemm_shapes(spec, m):
    """Shapes of the GEMM's A, B and C for a chunk of ``m`` images: the weights
    (groups, kg, cg*r*s) against the column slabs (m*groups, cg*r*s, oh*ow)."""
    rows = spec.cg * spec.r * spec.s
    return ((spec.groups, spec.kg, rows), (m * spec.groups, rows, spec.oh * spec.ow),
            (m * spec.groups, spec.kg, spec.oh * spec.ow))


def _unfold_grid(spec, m, sms=None):
    return grid_1d(m * spec.c * spec.r * spec.s * spec.oh * spec.ow, IM2COL_THREADS, sms,
                   MAX_BLOCKS)


def launches(spec, sms=None):
    """``[(kernel, grid, block)]``: the launches of one call on ``spec`` (per chunk of
    images), as `prepare` makes them (``sms``: SMs to fill, default the device's)."""
    out = []
    for _, m in _chunks(spec):
        if not _is_pointwise(spec):
            out.append(("im2col", *_unfold_grid(spec, m, sms)))
        out += gemm_launches(_gemm_shapes(spec, m)[2], sms)
    return out


def workspace(spec):
    """Device bytes `prepare` allocates: the weights and, unless 1x1, one chunk of column
    matrices."""
    cols = 0 if _is_pointwise(spec) else _chunk(spec) * spec.c * spec.r * spec.s * spec.oh * spec.ow
    return (spec.params + cols) * spec.itemsize


def prepare(w, spec):
    """Copy the weights to the device, allocate the column matrices; return ``compute``.

    Parameters
    ----------
    w : ndarray (k, cg, r, s)
        Host weights, C-contiguous, of dtype ``spec.dtype``.
    spec : ConvSpec-like
        The problem.

    Returns
    -------
    compute : callable
        ``compute(x, out)`` launches the kernels writing the convolution of the device array
        ``x`` (n, c, h, w) into the device array ``out`` (n, k, oh, ow); it does not
        synchronize.  With a single chunk of images its phases are ``im2col`` and ``gemm``.
    """
    dtype = np.dtype(spec.dtype)
    n, groups, kg, cg = spec.n, spec.groups, spec.kg, spec.cg
    r, s, oh, ow = spec.r, spec.s, spec.oh, spec.ow
    pt, _, pl, _ = spec.pads
    npix = oh * ow
    wmat = cuda.to_device(np.ascontiguousarray(w, dtype=dtype).reshape(groups, kg, cg * r * s))

    if _is_pointwise(spec):
        mm = plan(*_gemm_shapes(spec, n))

        def compute(x, out):
            mm(wmat, x.reshape(n * groups, cg, spec.h * spec.w), out.reshape(n * groups, kg, npix))

        return compute

    col = cuda.device_array((_chunk(spec), spec.c * r * s, npix), dtype=dtype)
    geometry = (r, s, spec.sh, spec.sw, spec.dh, spec.dw, pt, pl, ow)
    chunks = []  # (first image, images, column view, its GEMM view, unfolding, GEMM)
    for b0, m in _chunks(spec):
        cview = col[:m]
        shapes = _gemm_shapes(spec, m)
        unfold_kernel = _im2col_kernel(index_type(m * spec.c * r * s * npix))
        chunks.append((b0, m, cview, cview.reshape(shapes[1]),
                       launcher(unfold_kernel, *_unfold_grid(spec, m)), plan(*shapes)))

    def unfold(x, chunk):
        b0, _, cview, _, launch, _ = chunk
        launch(x, b0, *geometry, cview)

    def multiply(out, chunk):
        b0, m, _, bmat, _, mm = chunk
        mm(wmat, bmat, out[b0:b0 + m].reshape(m * groups, kg, npix))

    if len(chunks) == 1:
        return with_phases(("pack", lambda x, out: unfold(x, chunks[0])),
                           ("multiply", lambda x, out: multiply(out, chunks[0])))

    def compute(x, out):
        for chunk in chunks:
            unfold(x, chunk)
            multiply(out, chunk)

    return compute
