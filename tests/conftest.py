"""Test-session setup shared by every test group.

Without a GPU, CUDA code runs on Numba's CUDA simulator: the variable must be set before
``numba`` is first imported, which is why it is set here, at collection start.  On a machine
with an NVIDIA GPU (or with the variable already set) nothing changes.
"""

import os
from pathlib import Path

if "NUMBA_ENABLE_CUDASIM" not in os.environ and not Path("/dev/nvidia0").exists():
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    from tests import cudasim

    cudasim.install()  # a shorter GIL switch interval, a race-free shared-array lookup

import pytest  # noqa: E402 - after the simulator switch above


@pytest.fixture(autouse=True, scope="session")
def _roofline_cache(tmp_path_factory):
    """Every run of the test session (subprocesses too) finds its roofline in a private cache
    holding `tests.fakes.roofline`: no test pays a real measurement, nor writes to the user's
    cache.  Tests of the cache itself point ``CONVBENCH_CACHE_DIR`` elsewhere."""
    import numba

    from tests import fakes

    old = os.environ.get("CONVBENCH_CACHE_DIR")
    os.environ["CONVBENCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("convbench-cache"))
    fakes.prepare_roofline_cache(max(numba.config.NUMBA_NUM_THREADS, 8))
    yield
    if old is None:
        os.environ.pop("CONVBENCH_CACHE_DIR", None)
    else:
        os.environ["CONVBENCH_CACHE_DIR"] = old


@pytest.fixture
def fresh_choices(tmp_path, monkeypatch):
    """An empty choice database: a private cache directory, nothing of it in memory, no
    `CONVBENCH_AUTO` from the environment.  Returns the cache directory."""
    from convbench import choices

    monkeypatch.setenv("CONVBENCH_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("_TABLES", "_HITS", "_MODELS"):
        monkeypatch.setattr(choices, name, {})
    monkeypatch.setattr(choices, "_SAID", set())
    monkeypatch.delenv("CONVBENCH_AUTO", raising=False)
    return tmp_path / "cache"
