"""The array moves of the backward forms (`convbench_kernels.directions`) on the GPU.

Three small kernels over NCHW device arrays, one thread per element moved, consecutive threads
on consecutive columns: a window copied out of ``dy`` (a phase whose forward problem crops
it), a phase's result placed at a stride into ``dx``, and a phase no filter tap reaches set to
zero.  Flat indices are split in the type `convbench_kernels.cuda.launch.index_type` chooses
(unsigned 32-bit where the element count fits), so that the splits do not fall back to 64-bit
division emulation.
"""

from functools import cache

import numpy as np
from numba import cuda

from convbench_kernels.cuda.launch import index_type, unflattener

#: Threads per block.
THREADS = 256


@cache
def _kernels(ix):
    """``(copy, zero)`` splitting their flat indices in ``ix`` (`index_type`)."""
    unflat = unflattener(ix)

    @cuda.jit
    def copy(src, src_r0, src_c0, src_sr, src_sc, dst, dst_r0, dst_c0, dst_sr, dst_sc,
             rows, cols, total):
        """``dst[b, c, dst_r0 + dst_sr*i, dst_c0 + dst_sc*j] = src[b, c, src_r0 + src_sr*i,
        src_c0 + src_sc*j]`` for ``i < rows``, ``j < cols`` (``total`` = n*c*rows*cols)."""
        idx = cuda.grid(1)
        if idx >= total:
            return
        b, c, i, j = unflat(idx, dst.shape[1], rows, cols)
        dst[b, c, dst_r0 + dst_sr * i, dst_c0 + dst_sc * j] = \
            src[b, c, src_r0 + src_sr * i, src_c0 + src_sc * j]

    @cuda.jit
    def zero(dst, r0, c0, sr, sc, rows, cols, total):
        """``dst[b, c, r0 + sr*i, c0 + sc*j] = 0`` for ``i < rows``, ``j < cols``."""
        idx = cuda.grid(1)
        if idx >= total:
            return
        b, c, i, j = unflat(idx, dst.shape[1], rows, cols)
        dst[b, c, r0 + sr * i, c0 + sc * j] = 0

    return copy, zero


def _launch(total: int):
    return _kernels(index_type(total)), (max(1, -(-total // THREADS)), THREADS)


class DeviceArrays:
    """`convbench_kernels.directions.HostArrays`' four moves on numba.cuda device arrays."""

    @staticmethod
    def empty(shape, dtype):
        return cuda.device_array(shape, dtype=np.dtype(dtype))

    @staticmethod
    def crop(src, top, left, out):
        n, c, rows, cols = out.shape
        total = n * c * rows * cols
        (copy, _), launch = _launch(total)
        copy[launch](src, top, left, 1, 1, out, 0, 0, 1, 1, rows, cols, total)

    @staticmethod
    def place(src, dst, row0, col0, sh, sw):
        n, c, rows, cols = src.shape
        total = n * c * rows * cols
        (copy, _), launch = _launch(total)
        copy[launch](src, 0, 0, 1, 1, dst, row0, col0, sh, sw, rows, cols, total)

    @staticmethod
    def zero(dst, row0, col0, sh, sw, rows, cols):
        total = dst.shape[0] * dst.shape[1] * rows * cols
        (_, zero), launch = _launch(total)
        zero[launch](dst, row0, col0, sh, sw, rows, cols, total)


DEVICE = DeviceArrays()
