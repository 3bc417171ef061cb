"""Pieces shared by the CPU kernels."""

import ctypes
import math
import os
import threading

import numpy as np
from threadpoolctl import ThreadpoolController

# 0 as an int64, for a compiled kernel's calls of another: Numba types a literal 0 argument as
# Literal[int](0) and compiles the callee once more for it (twice a dtype where other calls
# pass a computed int).
ZERO = np.int64(0)

_BLAS = []


def single_threaded_blas():
    """A context in which BLAS runs on one thread, for GEMMs issued from Numba's threads.

    Two thread pools on few cores fight: after a ``prange`` region Numba's OpenMP workers
    spin while OpenBLAS' worker waits for a core, and a layer takes over ten times as long
    (measured on 2 cores, both for Winograd's GEMMs and separable's pointwise stage).
    Kernels that need BLAS next to ``prange`` therefore issue one single-threaded GEMM per
    Numba thread.

    The libraries are found once, by a threadpoolctl controller (slow: it inspects every
    loaded shared library); each use then calls their own get/set functions, a third of the
    cost of threadpoolctl's ``limit``, which rebuilds its bookkeeping every time (and limits
    on construction, not on entry).
    ``np.dot`` inside Numba calls SciPy's OpenBLAS, loaded only when SciPy's BLAS module is
    imported: import it first, or the controller would not see (nor limit) it.
    """
    if not _BLAS:
        import scipy.linalg.cython_blas  # noqa: F401

        controller = ThreadpoolController()
        _BLAS.extend(lib for lib in controller.lib_controllers if lib.user_api == "blas")
    return _OneBlasThread(_BLAS)


class _OneBlasThread:
    """Context limiting every BLAS library to one thread, restoring each one's count on exit."""

    def __init__(self, libs):
        self.libs = libs

    def __enter__(self):
        self.prev = [lib.get_num_threads() for lib in self.libs]
        for lib, n in zip(self.libs, self.prev, strict=True):
            if n != 1:
                lib.set_num_threads(1)

    def __exit__(self, *exc):
        for lib, n in zip(self.libs, self.prev, strict=True):
            if n != 1:
                lib.set_num_threads(n)




# Workspaces of prepared layers that no longer exist, kept for the next `prepare` (uint8 blocks).
# A fresh allocation of a few MB costs a page fault per 4 KiB page at first touch (costly in
# a VM: filling a fresh 9.4 MB buffer took about 17 times as long as refilling a reused one),
# and glibc hands large blocks back to the OS when they are freed, so a layer prepared per call
# (as `convbench.conv2d` does) would pay that on every call.
_FREE_WORKSPACES = []
# reentrant: a lease collected by the garbage collector while pooled_empty holds the lock gives
# its block back from the same thread
_FREE_LOCK = threading.RLock()


def _pool_bytes() -> int:
    """Most bytes kept free (beyond it the oldest free workspaces are dropped): a sixteenth of
    the machine's memory, between 64 MiB and 1 GiB.  Large enough for the workspaces of
    training batches (the tiled FFT's filter spectra of a 384 -> 256 layer at 16 x 16 tiles
    are 113 MB: a fresh block took 40 ms of page faults, three times the layer's compute)."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        ram = 0
    return min(max(ram // 16, 64 << 20), 1 << 30)


POOL_BYTES = _pool_bytes()


def _give_back(base):
    with _FREE_LOCK:
        _FREE_WORKSPACES.append(base)
        kept = 0
        for i in range(len(_FREE_WORKSPACES) - 1, -1, -1):
            kept += _FREE_WORKSPACES[i].nbytes
            if kept > POOL_BYTES:
                del _FREE_WORKSPACES[: i + 1]
                break


# A reused block is reported to tracemalloc as allocated while it is lent (NumPy reported it
# when it was created), so that measured workspaces do not depend on what the pool holds.
_TRACK = ctypes.pythonapi.PyTraceMalloc_Track
_TRACK.argtypes = (ctypes.c_uint, ctypes.c_size_t, ctypes.c_size_t)
_UNTRACK = ctypes.pythonapi.PyTraceMalloc_Untrack
_UNTRACK.argtypes = (ctypes.c_uint, ctypes.c_size_t)
_TRACE_DOMAIN = 0x63627770  # any domain other than NumPy's (389047)


class _Lease:
    """Bytes of a pooled block lent to one layer: every array made from it (views included)
    keeps it alive, and the block returns to the free list when the last one is gone."""

    def __init__(self, base, start, nbytes, reused):
        self.base = base
        self.ptr = base.__array_interface__["data"][0]
        self.reused = reused
        self.__array_interface__ = {"data": (self.ptr + start, False),
                                    "shape": (nbytes,), "typestr": "|u1", "version": 3}
        if reused:
            _TRACK(_TRACE_DOMAIN, self.ptr, nbytes)

    def __del__(self):
        if self.reused:
            _UNTRACK(_TRACE_DOMAIN, self.ptr)
        _give_back(self.base)


def pooled_empty(shape, dtype):
    """An uninitialized C array for a prepared layer's workspace, reusing the memory of a layer
    that no longer exists.

    The memory returns to a small free list (at most ``POOL_BYTES``) once neither the array
    nor any view of it is referenced: a workspace is never shared by two live layers.
    """
    dtype = np.dtype(dtype)
    count = math.prod(shape) if isinstance(shape, tuple) else int(shape)
    nbytes = max(count, 1) * dtype.itemsize + 64  # room to align the start to a cache line
    base = None
    with _FREE_LOCK:
        # the smallest free block that fits, unless it wastes more than half of itself
        for b in _FREE_WORKSPACES:
            if nbytes <= b.nbytes <= 2 * nbytes + 4096 and (base is None or b.nbytes < base.nbytes):
                base = b
        if base is not None:
            for i, b in enumerate(_FREE_WORKSPACES):
                if b is base:
                    del _FREE_WORKSPACES[i]
                    break
    reused = base is not None
    if base is None:
        base = np.empty(nbytes, dtype=np.uint8)
    lease = _Lease(base, -base.__array_interface__["data"][0] % 64, count * dtype.itemsize,
                   reused)
    return np.asarray(lease).view(dtype).reshape(shape)


def carve(dtype, *shapes):
    """Empty arrays of ``shapes``, views of one workspace from `common.pooled_empty`.

    Allocated afresh in every `prepare`, Winograd's U, V, M and padded input would be
    page-faulted in on every call, since glibc returns such blocks to the OS when they are
    freed (every block over 32 MB, and smaller ones when they sit at the top of the heap): 875
    faults a
    call on 64 -> 64 @56, costing nearly as much as the compute itself, and far more for
    the 38 MB U of 512 -> 512 @7.
    The pool hands a workspace to a new layer only once no view of it is left, so never to a
    second layer while the first can still run.
    """
    align = 64  # bytes: every array starts on a cache line (so does the block)
    sizes = [-(-math.prod(sh) * dtype.itemsize // align) * align for sh in shapes]
    block = pooled_empty(sum(sizes), np.uint8)
    arrays, off = [], 0
    for sh, size in zip(shapes, sizes, strict=True):
        arrays.append(block[off:off + math.prod(sh) * dtype.itemsize].view(dtype).reshape(sh))
        off += size
    return arrays
