"""Where arrays live and how time is read there: the host (``cpu``) or a CUDA device.

The harness moves inputs with `Device.put`, reads results with `Device.get`, and times with
`Device.clock`, so that the runner and the API treat both devices alike.  ``numba.cuda`` is
imported only when the CUDA device is asked for.
"""

from __future__ import annotations

import importlib.util
import os
import time

import numpy as np


class Host:
    """NumPy arrays in host memory; wall-clock time."""

    name = "cpu"
    simulated = False

    def put(self, a: np.ndarray):
        return a

    def get(self, a) -> np.ndarray:
        return a

    def nan(self, shape, dtype):
        """An output buffer filled with NaN, so that elements a kernel fails to write show."""
        return np.full(shape, np.nan, dtype=dtype)

    def empty(self, shape, dtype):
        return np.empty(shape, dtype=dtype)

    def clock(self):
        return time.perf_counter()


class Cuda(Host):
    """Device arrays on the current CUDA device (or Numba's simulator).

    On a GPU, `clock` reads CUDA events: it records an event, waits for it, and returns the
    seconds elapsed since the first event, so that a time between two readings covers exactly
    the launches between them.  On the simulator the kernels run on the CPU, synchronously;
    its times say nothing about a GPU (rows are marked ``simulated``).
    """

    name = "cuda"

    def __init__(self):
        from numba import cuda

        self.cuda = cuda
        self.simulated = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
        self._origin = None

    def put(self, a: np.ndarray):
        return self.cuda.to_device(np.ascontiguousarray(a))

    def get(self, a) -> np.ndarray:
        return a.copy_to_host()

    def nan(self, shape, dtype):
        return self.cuda.to_device(np.full(shape, np.nan, dtype=dtype))

    def empty(self, shape, dtype):
        return self.cuda.device_array(shape, dtype=dtype)

    def clock(self):
        if self.simulated:
            return time.perf_counter()
        event = self.cuda.event(timing=True)
        event.record()
        event.synchronize()
        if self._origin is None:
            self._origin = event
            return 0.0
        return self.cuda.event_elapsed_time(self._origin, event) / 1e3


def cuda_status() -> tuple[bool, str]:
    """``(usable, reason)``: whether CUDA algorithms can run here, and why not."""
    if importlib.util.find_spec("numba_cuda") is None:
        return False, "numba-cuda is not installed (pip install 'convbench[cuda]')"
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return True, "CUDA simulator (NUMBA_ENABLE_CUDASIM=1): timings are meaningless"
    from numba import cuda

    try:
        if cuda.is_available():
            return True, ""
    except Exception as err:  # a broken driver is a reason, not a crash
        return False, f"CUDA unavailable: {err}"
    return False, "no CUDA device or driver (NUMBA_ENABLE_CUDASIM=1 runs the simulator)"


def get(name: str) -> Host:
    """The device called ``name``; a ValueError says why CUDA cannot be used."""
    if name == "cpu":
        return Host()
    if name == "cuda":
        usable, reason = cuda_status()
        if not usable:
            raise ValueError(f"device 'cuda' cannot be used: {reason}")
        return Cuda()
    raise ValueError(f"device must be one of cpu, cuda, got {name!r}")
