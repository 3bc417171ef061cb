"""`convbench compile`: jobs per family and dtype, and a pool of processes that fills Numba's
cache with exactly what a later process runs."""

import json
import os
import subprocess
import sys

from convbench import compiling, registry

# A process that installs direct's 6 x 2 register tile (a specialisation of its own: the
# tile is part of the kernel's type) and then either compiles direct in a pool of two
# processes (one a dtype) or runs it on every case and lists the kernels Numba had to
# compile, not load, from its cache.
SCRIPT = """
import json, sys
from numba.core.dispatcher import Dispatcher
from convbench import compiling, registry
from convbench.spec import DTYPES
from convbench_kernels.cpu import common, direct, microkernel
registry.install_params("direct", {"kb": 6, "nv": 2})
if sys.argv[1] == "compile":
    seconds = compiling.compile_kernels([registry.get("direct")], directions=("fwd",),
                                        processes=2)
    print(json.dumps(seconds))
else:
    for dtype in DTYPES:
        compiling.compile_job(("direct",), dtype, ("fwd",))
    compiled = [f"{m.__name__}.{k}" for m in (common, direct, microkernel)
                for k, v in vars(m).items()
                if isinstance(v, Dispatcher) and dict(v.stats.cache_misses)]
    print(json.dumps(compiled))
"""


def _run(step, cache_dir):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    out = subprocess.run([sys.executable, "-c", SCRIPT, step], env=env, check=True,
                         capture_output=True, text=True, timeout=600).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_a_pool_compiles_what_a_later_process_loads(tmp_path):
    assert _run("compile", tmp_path) > 0
    assert _run("check", tmp_path) == []


def test_a_cold_process_compiles_what_it_runs(tmp_path):
    """The check above can fail: without the pool, the kernels are compiled, not loaded."""
    assert "convbench_kernels.cpu.direct._direct" in _run("check", tmp_path)


def test_jobs_are_one_per_family_and_dtype_largest_family_first():
    algos = [registry.get(n) for n in ("direct", "separable", "winograd_f23", "depthwise",
                                       "winograd_f43", "winograd_f63")]
    assert compiling.jobs(algos, ("float32", "float64")) == [
        (("winograd_f23", "winograd_f43", "winograd_f63"), "float32"),
        (("winograd_f23", "winograd_f43", "winograd_f63"), "float64"),
        (("separable", "depthwise"), "float32"),  # separable runs depthwise's kernels
        (("separable", "depthwise"), "float64"),
        (("direct",), "float32"),
        (("direct",), "float64"),
    ]


def test_only_convbench_cpu_kernels_are_compiled():
    names = {a.name for a in compiling.compilable()}
    assert "direct" in names and "fft_tiled" in names
    assert not names & {"torch", "scipy"}
    assert all(registry.get(n).device == "cpu" for n in names)


def test_the_command_compiles_and_says_how_long(capsys):
    from convbench import cli

    code = cli.main(["compile", "--algo", "direct", "--dtype", "float32", "--dir", "fwd",
                     "--processes", "1"])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out.startswith("compiled in ")
    assert "direct (float32)" in captured.err
