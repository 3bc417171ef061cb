"""Numba's CUDA simulator, made fast and race-free enough for a test suite.

The simulator runs every thread of a block as a Python thread.  Two things about it matter:

- Its block manager polls the threads in a loop that holds the GIL for a whole switch
  interval (5 ms by default) before a thread may run: a shorter interval hands the GIL over
  sooner (the GEMM kernel's tests ran 2.7x faster at 0.2 ms, nothing else changed).
- ``cuda.shared.array`` finds the block's array by its call site in a dict, with a check and
  then a set and no lock: two threads that both miss create two arrays, and the block's
  threads then write to different "shared" memories (garbage results, seen about once in
  ten runs of the FFT and GEMM tests once threads switch often).  `_shared_array` is the
  same lookup under a lock.

`install` applies both; `tests/conftest.py` calls it when the simulator is on.  Neither
changes what a kernel computes on a GPU.
"""

import sys
import threading
import traceback

import numpy as np

SWITCH_INTERVAL = 2e-4  # seconds

_LOCK = threading.Lock()


def _shared_array(self, shape, dtype, alignment=None):
    """``FakeCUDAShared.array`` with its lookup under a lock (otherwise the simulator's own:
    one array per call site and block, dynamic shared memory for shape 0)."""
    from numba.cuda import types
    from numba.cuda.np import numpy_support

    if alignment is not None:
        raise RuntimeError("Array alignment is not supported in cudasim")
    if isinstance(dtype, types.Type):
        dtype = numpy_support.as_dtype(dtype)
    if shape == 0:
        count = self._dynshared_size // dtype.itemsize
        return np.frombuffer(self._dynshared.data, dtype=dtype, count=count)
    caller = traceback.extract_stack(sys._getframe())[-2][0:2]  # the kernel's line
    with _LOCK:
        res = self._allocations.get(caller)
        if res is None:
            res = self._allocations[caller] = np.empty(shape, dtype)
    return res


def install() -> None:
    """Shorten the GIL switch interval and lock the shared-array lookup (idempotent)."""
    from numba.cuda.simulator import kernelapi

    shared = kernelapi.FakeCUDAShared
    if not hasattr(shared, "array") or not hasattr(shared(0), "_allocations"):
        raise RuntimeError("numba-cuda's simulator changed: revisit tests/cudasim.py")
    shared.array = _shared_array
    sys.setswitchinterval(SWITCH_INTERVAL)
