"""The device layer's clocks and launch-floor rule, on fake events (no GPU, no simulator)."""

import numpy as np
import pytest

from convbench import devices


class FakeEvents:
    """Events stamped with a true time in float64 seconds; ``elapsed_ms`` answers as CUDA
    does, in float32 milliseconds."""

    def __init__(self):
        self.now = 0.0

    def record(self):
        return self.now

    @staticmethod
    def elapsed_ms(start, end):
        return np.float32((end - start) * 1e3)


def test_event_clock_keeps_microseconds_after_an_hour():
    """One origin event would read 3600.000001 s - 3600 s in float32 ms: 0 or 244 us."""
    ev = FakeEvents()
    clock = devices.EventClock(ev.record, ev.elapsed_ms)
    assert clock() == 0.0
    for _ in range(60):  # an hour of minute-long readings
        ev.now += 60.0
        clock()
    ev.now += 1e-6
    t0 = clock()
    ev.now += 2.5e-6
    t1 = clock()
    assert t1 - t0 == pytest.approx(2.5e-6, rel=1e-6)
    assert t0 == pytest.approx(3600 + 1e-6, rel=1e-9)


def test_launch_bound_warns_under_the_floors():
    floor = 5e-6
    assert devices.launch_bound(devices.LAUNCH_BOUND_FLOORS * floor * 0.9, floor).startswith(
        "launch-bound: a call takes 9.0 empty-kernel launches (5.0 us each)")
    assert devices.launch_bound(devices.LAUNCH_BOUND_FLOORS * floor * 1.1, floor) is None
    assert devices.launch_bound(1e-9, 0.0) is None


class FakeGpu(devices.Host):
    """A device whose arrays live in 8 GiB of free device memory."""

    name = "cuda"

    def free_memory(self):
        return 8 << 30


def test_budgets_follow_where_the_arrays_live(monkeypatch):
    from convbench import runner

    monkeypatch.setattr(runner.machine, "available_memory", lambda: 2 << 30)
    places = {"cpu": devices.Host(), "cuda": FakeGpu()}
    assert runner._budgets(places, None) == {"cpu": 1 << 30, "cuda": 4 << 30}
    assert runner._budgets(places, 123) == {"cpu": 123, "cuda": 123}  # --max-memory: both
    assert runner._budgets({"cuda": "no GPU"}, None) == {"cuda": 1 << 30}
