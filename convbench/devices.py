"""Where arrays live and how time is read there: the host (``cpu``) or a CUDA device.

The harness moves inputs with `Device.put`, reads results with `Device.get`, and times with
`Device.clock`, so that the runner and the API treat both devices alike.  ``numba.cuda`` is
imported only when the CUDA device is asked for.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable

import numpy as np

from .timing import measure

# A call whose median is under this many empty-kernel launches is launch-bound: the CUDA
# families launch 1 to 7 kernels a call (more on FFT's per-stage path), so below it the time
# says more about launching than about the kernels.
LAUNCH_BOUND_FLOORS = 10


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

    def free_memory(self) -> int | None:
        """Free bytes of the device's own memory; None where arrays live in host memory."""
        return None


class EventClock:
    """Seconds on a device's timeline, read from events: a float64 sum of event pairs.

    Each reading records an event, waits for it, and adds the time since the previous
    reading's event.  CUDA gives an event pair's time as float32 milliseconds: against one
    origin event the resolution would decay as a sweep runs (about 4 us after a minute,
    0.25 ms after an hour), while a pair of consecutive readings keeps float32's 7 digits of
    the interval itself, and the float64 sum keeps them over any run length.  The time
    between two readings covers exactly the launches between them.

    Parameters
    ----------
    record : callable
        ``record()`` records an event on the device's stream, waits for it and returns it.
    elapsed_ms : callable
        ``elapsed_ms(start, end)``: milliseconds between two recorded events.
    """

    def __init__(self, record: Callable[[], object],
                 elapsed_ms: Callable[[object, object], float]):
        self._record = record
        self._elapsed_ms = elapsed_ms
        self._last = None
        self._seconds = 0.0

    def __call__(self) -> float:
        event = self._record()
        if self._last is not None:
            self._seconds += float(self._elapsed_ms(self._last, event)) / 1e3
        self._last = event
        return self._seconds


class Cuda(Host):
    """Device arrays on the current CUDA device (or Numba's simulator).

    On a GPU, `clock` is an `EventClock` on the default stream.  On the simulator the kernels
    run on the CPU, synchronously, and the clock is the host's; its times say nothing about a
    GPU (rows are marked ``simulated``).
    """

    name = "cuda"

    def __init__(self):
        from numba import cuda

        self.cuda = cuda
        self.simulated = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
        self.clock = time.perf_counter if self.simulated else EventClock(
            self._recorded_event, cuda.event_elapsed_time)
        self._launch_floor = None

    def put(self, a: np.ndarray):
        return self.cuda.to_device(np.ascontiguousarray(a))

    def get(self, a) -> np.ndarray:
        return a.copy_to_host()

    def nan(self, shape, dtype):
        return self.cuda.to_device(np.full(shape, np.nan, dtype=dtype))

    def empty(self, shape, dtype):
        return self.cuda.device_array(shape, dtype=dtype)

    def free_memory(self) -> int | None:
        if self.simulated:  # the simulator's device arrays are NumPy arrays
            return None
        free, _ = self.cuda.current_context().get_memory_info()
        return int(free)

    def _recorded_event(self):
        event = self.cuda.event(timing=True)
        event.record()
        event.synchronize()
        return event

    def launch_floor(self) -> float:
        """Seconds per launch of an empty one-thread kernel, launched back to back and timed
        like a call (measured once per device object): the least a call of ``L`` launches
        can take is ``L`` times this."""
        if self._launch_floor is None:
            empty = self.cuda.jit("void()")(_empty)
            launch = empty[1, 1]
            launch()  # loaded, and the launch path warm
            self._launch_floor = measure(launch, min_time=0.01, values=5, max_seconds=1.0,
                                         clock=self.clock).stats["median"]
        return self._launch_floor


def _empty():
    """The body of the empty kernel `Cuda.launch_floor` launches."""


def launch_bound(median_s: float, floor_s: float) -> str | None:
    """A warning when a call's ``median_s`` is under `LAUNCH_BOUND_FLOORS` launch floors."""
    if floor_s > 0 and median_s < LAUNCH_BOUND_FLOORS * floor_s:
        return (f"launch-bound: a call takes {median_s / floor_s:.1f} empty-kernel launches "
                f"({floor_s * 1e6:.1f} us each)")
    return None


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
