"""Compiling the CPU kernels before they run, in several processes at once.

Numba compiles one function at a time in a process, and a cold start compiles about a
hundred specialisations (each family's kernels in float32 and float64, every path), most of
them parallel kernels with a fixed cost of a second or more each.  Numba's cache on disk is
shared by every process of the machine, so the work splits: `compile_kernels` gives a pool of
processes one job per family and dtype, each compiling its family's kernels on the problems
of `convbench.cases` (which reach every kernel path) into the cache; a later run loads them
from it (about 2 s for all).

The pool's processes save under a lock (`convbench_kernels.numba_cache`, on in every process
that imports the kernels): two jobs compiling a helper both call save whole.  Where there is
no ``flock`` (Windows), or in a daemonic process (which may not start processes: a Dask
nanny's worker), the jobs run one after the other in this process.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace

import numpy as np

from . import machine, registry, runner
from .cases import CASES
from .spec import DIRECTIONS, DTYPES

# families whose kernels are another's: compiled in the same job, not twice at once
_SHARES = {"separable": "depthwise"}


def compilable() -> list[registry.Algorithm]:
    """convbench's own CPU kernels (not the baselines, not other packages' entries, which
    may not cache)."""
    return [a for a in registry.algorithms("cpu")
            if a.family != "baseline" and registry.origin(a) == "convbench"]


def jobs(algos: Iterable[registry.Algorithm], dtypes=DTYPES) -> list[tuple[tuple[str, ...], str]]:
    """``(algorithm names, dtype)`` per job: one job a family (with the families that
    share its kernels) and dtype, the families with most algorithms first (they take
    longest: a pool that starts them first finishes sooner)."""
    groups: dict[str, list[str]] = {}
    for a in algos:
        groups.setdefault(_SHARES.get(a.family, a.family), []).append(a.name)
    ordered = sorted(groups.values(), key=len, reverse=True)
    return [(tuple(names), dtype) for names in ordered for dtype in dtypes]


def compile_job(names: tuple[str, ...], dtype: str, directions: tuple[str, ...]) -> float:
    """Run each of ``names`` once on every problem of `convbench.cases` it supports, in
    ``dtype`` and ``directions``; the seconds it took (compilation, or loading the cache)."""
    start = time.perf_counter()
    for name in names:
        algo = registry.get(name, "cpu")
        for case in CASES.values():
            for direction in directions:
                spec = replace(case, dtype=dtype, direction=direction)
                if algo.supports(spec) is not None:
                    continue
                arg, operand, _ = runner.operands(spec, algo.operator)
                algo.prepare(operand, spec)(arg, np.empty(spec.result_shape, spec.dtype))
    return time.perf_counter() - start


def _start_process(params: dict[str, dict]) -> None:
    """A pool process: the parent's kernel parameters (they decide which specialisations a
    kernel compiles)."""
    for family, chosen in params.items():
        registry.install_params(family, chosen)


def compile_kernels(algos: Iterable[registry.Algorithm] | None = None, dtypes=DTYPES,
                    directions=DIRECTIONS, processes: int | None = None,
                    done: Callable[[tuple[str, ...], str, float], None] = lambda *a: None
                    ) -> float:
    """Compile ``algos`` (default: `compilable`) into Numba's cache in ``processes``
    processes (default: the usable cores; 1 compiles in this process).  ``done(names,
    dtype, seconds)`` is called as each job ends.  Returns the seconds taken in all."""
    work = jobs(compilable() if algos is None else algos, dtypes)
    processes = min(processes or machine.usable_cores(), len(work) or 1)
    if not registry.cache_saves_locked() or multiprocessing.current_process().daemon:
        processes = 1
    start = time.perf_counter()
    if processes == 1:
        for names, dtype in work:
            done(names, dtype, compile_job(names, dtype, tuple(directions)))
        return time.perf_counter() - start
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_start_process,
                             initargs=(registry.installed_params(),)) as pool:
        futures = {pool.submit(compile_job, names, dtype, tuple(directions)): (names, dtype)
                   for names, dtype in work}
        for future in as_completed(futures):
            done(*futures[future], future.result())
    return time.perf_counter() - start
