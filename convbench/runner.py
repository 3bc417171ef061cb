"""Run a sweep: every (problem, algorithm) pair becomes one row, journaled as soon as it exists.

Per problem: seeded inputs and the float64 reference, once.  Per algorithm: an
``unsupported`` row with the reason, a ``skipped`` row (no device, over the memory budget),
an ``error`` row with the exception's message, or an ``ok`` row: prepare, compile, time, check.
"""

from __future__ import annotations

import json
import time
import tracemalloc
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numba
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from convbench_kernels.reference import composed_weight, reference_conv2d

from . import accuracy, choices, devices, machine, plugins, registry, roofline, store, sweep, tuning
from .spec import ConvSpec
from .timing import measure, time_once

# One thread pool: the kernels parallelize with Numba's threads and call BLAS, single-threaded,
# from inside them.  BLAS' own workers are never woken: after a call they spin for ~0.1 s and
# take the cores Numba's workers need (measured: every 2-thread kernel then took 4-8 ms a call,
# whatever its size, right after the float64 reference ran a multi-threaded GEMM).
BLAS_THREADS = 1

# Fraction of the memory available at the start of a run that one case may use for its
# workspace, unless --max-memory says otherwise.
MEMORY_FRACTION = 0.5


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep: the rows so far are saved; ``run_dir`` can be resumed."""

    def __init__(self, run_dir: Path):
        super().__init__(str(run_dir))
        self.run_dir = run_dir


@dataclass
class _Problem:
    """Inputs and references of one problem, made once and shared by its algorithms."""

    spec: ConvSpec
    _cache: dict = field(default_factory=dict)

    def _rng(self, salt: str) -> np.random.Generator:
        return np.random.default_rng(zlib.crc32(f"{self.spec.id}/{salt}".encode()))

    def _ref(self, x, w) -> np.ndarray:
        s = self.spec
        return reference_conv2d(x, w, stride=(s.sh, s.sw), pads=s.pads,
                                dilation=(s.dh, s.dw), groups=s.groups)

    def inputs(self, operator: str):
        """``(x, weights, reference)`` for a standard (``conv``) or ``separable`` operator."""
        if operator not in self._cache:
            s = self.spec
            x = self._rng("x").standard_normal(s.input_shape).astype(s.dtype)
            if operator == "separable":
                rng = self._rng("separable")
                wd = rng.standard_normal((s.c, 1, s.r, s.s)).astype(s.dtype)
                wp = rng.standard_normal((s.k, s.c, 1, 1)).astype(s.dtype)
                # the separable operator equals a standard conv with the composed weights
                ref = self._ref(x, composed_weight(wd, wp))
                self._cache[operator] = (x, (wd, wp), ref)
            else:
                w = self._rng("w").standard_normal(s.weight_shape).astype(s.dtype)
                self._cache[operator] = (x, w, self._ref(x, w))
        return self._cache[operator]


def problem_columns(spec: ConvSpec) -> dict:
    def enc(v):
        return "x".join(map(str, v)) if isinstance(v, tuple) else str(v)

    pt, pb, pl, pr = spec.pads
    return {
        "problem": spec.id, "name": spec.name, "count": spec.count,
        "n": spec.n, "c": spec.c, "h": spec.h, "w": spec.w, "k": spec.k, "r": spec.r,
        "s": spec.s, "stride": enc(spec.stride), "padding": enc(spec.padding),
        "dilation": enc(spec.dilation), "groups": spec.groups, "dtype": spec.dtype,
        "sh": spec.sh, "sw": spec.sw, "dh": spec.dh, "dw": spec.dw,
        "pt": pt, "pb": pb, "pl": pl, "pr": pr, "oh": spec.oh, "ow": spec.ow,
        "flops": spec.flops, "params": spec.params, "min_bytes": spec.min_bytes,
    }


def _workspace(prepare: Callable, compute_args) -> int:
    """Peak bytes allocated during a prepare and one call: what the algorithm needs beyond
    its input and output.  tracemalloc sees NumPy's allocations and Numba's too (Numba's
    runtime allocates through CPython's allocator)."""
    tracemalloc.start()
    try:
        compute = prepare()
        compute(*compute_args)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def run_case(spec: ConvSpec, algo: registry.Algorithm, problem: _Problem,
             timing: sweep.TimingConfig, memory_budget: int,
             device: devices.Host | str) -> dict:
    """One row: the outcome of ``algo`` on ``spec``, on ``device`` (a `devices.Host` or
    `devices.Cuda`, or the reason the algorithm's device cannot be used)."""
    row = {**problem_columns(spec), "algorithm": algo.name, "family": algo.family,
           "device": algo.device, "operator": algo.operator, "status": "ok", "reason": "",
           "tolerance": algo.tolerance[spec.dtype], "warnings": ""}
    if isinstance(device, str):
        return {**row, "status": "skipped", "reason": device}
    row["simulated"] = device.simulated
    reason = algo.supports(spec)
    if reason is not None:
        return {**row, "status": "unsupported", "reason": reason}
    estimate = algo.workspace(spec) if algo.workspace else 0
    if estimate > memory_budget:
        return {**row, "status": "skipped",
                "reason": f"estimated workspace {estimate / 2**20:.0f} MiB exceeds the memory "
                          f"budget of {memory_budget / 2**20:.0f} MiB"}
    try:
        host_x, w, ref = problem.inputs(algo.operator)
        warnings = []
        clock = device.clock
        t0 = clock()
        x = device.put(host_x)
        h2d_s = clock() - t0
        first_prepare = time_once(lambda: algo.prepare(w, spec), clock)  # compiles prepare
        compute = algo.prepare(w, spec)
        params = getattr(compute, "params", None)
        out = device.nan(spec.output_shape, spec.dtype)
        first_call = time_once(lambda: compute(x, out), clock)  # compiles the kernels
        t0 = clock()
        result = device.get(out)
        d2h_s = clock() - t0
        err = accuracy.errors(result, ref)
        accurate, why = accuracy.judge(err, algo.tolerance[spec.dtype], ref)
        prepare_s = time_once(lambda: algo.prepare(w, spec), clock)
        # host allocations only: device memory is not traced
        workspace = (_workspace(lambda: algo.prepare(w, spec), (x, out))
                     if device.name == "cpu" else None)
        t = measure(lambda: compute(x, out), min_time=timing.min_time, values=timing.values,
                    max_seconds=timing.max_seconds, warmups=timing.warmups, clock=clock)
        st = t.stats
        phases = {name: measure(partial(fn, x, out), min_time=timing.min_time / 2, values=3,
                                max_seconds=timing.max_seconds / 4, warmups=0,
                                clock=clock).stats["median"]
                  for name, fn in getattr(compute, "phases", ())}
        floor = device.launch_floor() if device.name == "cuda" else None
        if device.simulated:
            warnings.append("CUDA simulator: times say nothing about a GPU")
        elif floor is not None:
            warnings.extend(filter(None, [devices.launch_bound(st["median"], floor)]))
        if not accurate:
            warnings.append(f"inaccurate: {why}")
        return {
            **row, **{k: v for k, v in err.items() if k.endswith("_err")},
            "accurate": accurate,
            "compile_s": max(first_prepare - prepare_s, 0.0) + max(first_call - st["median"], 0.0),
            "prepare_s": prepare_s,
            "median_s": st["median"], "min_s": st["min"], "q1_s": st["q1"], "q3_s": st["q3"],
            "std_s": st["std"], "n_values": st["n_values"], "loops": t.loops,
            "values_s": t.values,
            "gflops": spec.flops / st["median"] / 1e9 if st["median"] > 0 else float("nan"),
            "workspace_bytes": workspace,
            "phases_s": json.dumps(phases) if phases else "",
            "params": json.dumps(params, sort_keys=True) if params else "",
            **({"h2d_s": h2d_s, "d2h_s": d2h_s, "launch_floor_s": floor}
               if device.name == "cuda" else {}),
            "warnings": "; ".join(warnings + t.warnings),
        }
    except Exception as exc:  # one algorithm's failure must not end the sweep
        msg = str(exc).strip().splitlines()
        return {**row, "status": "error",
                "reason": f"{type(exc).__name__}: {msg[0] if msg else ''}"[:500]}


def time_problem(spec: ConvSpec, algos, timing: sweep.TimingConfig) -> list[dict]:
    """The rows of ``algos`` on ``spec``, made as a sweep makes them (prepared, compiled,
    checked against the float64 reference, timed, BLAS on one thread) but outside any run:
    what ``conv2d(..., algo="auto")`` measures on a miss."""
    places = _devices({a.device for a in algos})
    problem = _Problem(spec)
    budgets = _budgets(places, None)
    threads = numba.get_num_threads()
    with threadpool_limits(BLAS_THREADS, user_api="blas"):
        return [{**run_case(spec, a, problem, timing, budgets[a.device], places[a.device]),
                 "threads": threads} for a in algos]


def _roofline(meta: dict, threads: int, remeasure: bool) -> roofline.Roofline | None:
    """The run's roofline, recorded in ``meta["roofline"]``: a resumed run's own when it has
    one at these threads, else the cached or freshly measured one (None, and the error in
    ``meta``, when measuring fails)."""
    old = meta.get("roofline")
    if old and not remeasure and old.get("threads") == threads:
        try:
            return roofline.Roofline.from_dict(old)
        except ValueError:
            pass
    try:
        roof, _ = roofline.load_or_measure(threads, remeasure=remeasure)
    except Exception as err:  # the rows are worth having without their fractions
        meta["roofline"] = {"error": f"{type(err).__name__}: {err}"[:500]}
        return None
    meta["roofline"] = roof.to_dict()
    return roof


def _estimate(algo: registry.Algorithm, spec: ConvSpec, row: dict) -> int | None:
    """The entry's workspace estimate for a timed CPU row (None otherwise, or on failure)."""
    if row.get("status") != "ok" or row.get("device") != "cpu" or algo.workspace is None:
        return None
    try:
        return int(algo.workspace(spec))
    except Exception:  # an estimate must never cost a measured row
        return None


def _devices(names) -> dict:
    """Each device by name, or the reason it cannot be used (its rows are then skipped)."""
    places = {}
    for name in names:
        try:
            places[name] = devices.get(name)
        except ValueError as err:
            places[name] = str(err)
    return places


def _budgets(places: dict, max_memory: int | None) -> dict:
    """Workspace bytes one case may use on each device: ``max_memory`` when given, else
    `MEMORY_FRACTION` of the memory free where its arrays live: a GPU's own memory
    (`devices.Cuda.free_memory`), the host's for the CPU and the CUDA simulator."""
    host = max_memory or int(MEMORY_FRACTION * machine.available_memory())
    budgets = {}
    for name, place in places.items():
        free = None if max_memory or isinstance(place, str) else place.free_memory()
        budgets[name] = host if free is None else int(MEMORY_FRACTION * free)
    return budgets


def _key(row_or_spec, algo_name=None, device=None) -> tuple:
    if isinstance(row_or_spec, ConvSpec):
        return (row_or_spec.id, row_or_spec.name, algo_name, device)
    return tuple(row_or_spec[k] for k in store.KEY)


def resolve_config(config) -> sweep.SweepConfig:
    """A SweepConfig from itself, a preset name, or a path to a TOML or batch file."""
    if isinstance(config, sweep.SweepConfig):
        return config
    text = str(config)
    if text in sweep.preset_names():
        return sweep.preset(text)
    path = Path(text)
    if path.suffix == ".toml":
        return sweep.load_config(path)
    if path.exists():
        return sweep.load_batch(path)
    raise ValueError(f"config: {text!r} is neither a preset ({', '.join(sweep.preset_names())}) "
                     "nor an existing .toml or batch file")


@dataclass
class _Run:
    """A run being made: its sweep, directory, ``meta.json`` content and the row keys it
    already holds (a resumed run's)."""

    config: sweep.SweepConfig
    meta: dict
    run_dir: Path | None = None
    done: set = field(default_factory=set)


def _open(config, resume) -> _Run:
    """The run to make: a resumed run's own config, meta and finished rows, or a new one
    (nothing is written yet: bad input must leave no directory behind)."""
    if resume is None:
        return _Run(resolve_config(config), meta={})
    run_dir = Path(resume)
    meta = store.read_meta(run_dir)
    meta.pop("end", None)
    meta["resumed"] = [*meta.get("resumed", []), time.strftime("%Y-%m-%dT%H:%M:%S%z")]
    return _Run(sweep.from_dict(meta["config"], source=f"{run_dir}/{store.META}"), meta,
                run_dir, {_key(r) for r in store.read_journal(run_dir)})


def select(config: sweep.SweepConfig, entries=None) -> list[registry.Algorithm]:
    """The entries a sweep runs: on its devices, the ones it names, or every default entry
    (opt-in entries, ``default=False``, only when named)."""
    algos = [a for a in (registry.algorithms() if entries is None else entries)
             if a.device in config.devices
             and (a.default if config.algorithms is None else a.name in config.algorithms)]
    if not algos:
        raise ValueError(f"{config.source or config.name}: no registered algorithm matches "
                         f"algorithms={list(config.algorithms or ['all'])} on devices="
                         f"{list(config.devices)}")
    return algos


def _create(run: _Run, results_dir, run_id: str | None) -> None:
    """Make a new run's directory and first meta (a resumed run has both)."""
    if run.run_dir is not None:
        return
    run_id = run_id or store.new_run_id()
    run.run_dir = Path(results_dir) / run_id
    run.run_dir.mkdir(parents=True, exist_ok=False)
    run.meta = {"run_id": run_id, "config": run.config.to_dict(),
                "start": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _algorithm_records(algos) -> list[dict]:
    """What ``meta.json`` says of each algorithm run: where it comes from (convbench, a
    plugin, ``register()``)."""
    return [{"name": a.name, "device": a.device, "family": a.family,
             "origin": registry.origin(a)} for a in algos]


def _tuning(meta: dict, threads: int, retune: bool, algos) -> dict:
    """The kernel parameters of the run: a resumed run's own (so that all its rows ran the
    same), else tuned now (``retune``), else this machine's cached tuning, else the
    target-derived defaults; what ``meta.json`` says of them."""
    if not any(a.device == "cpu" for a in algos):
        return {"source": "none", "note": "", "params": {}}
    old = meta.get("tuning")
    if old and old.get("params") is not None and not retune:
        chosen = tuning.Tuning(old["params"], old.get("source", "cache"), old.get("note", ""),
                               old.get("path", ""))
        tuning.install(chosen)
    else:
        chosen = tuning.tune(threads) if retune else tuning.use(threads)
    return {**chosen.to_dict(), "target": registry.cpu_target().to_dict()}


def _start(run: _Run, algos, threads: int, budget: int, remeasure: bool, retune: bool):
    """Record the run's settings and machine in ``meta.json``; return its roofline."""
    run.meta.update(threads=threads, blas_threads=BLAS_THREADS, memory_budget=budget,
                    machine=machine.fingerprint(), algorithms=_algorithm_records(algos),
                    plugin_problems=plugins.problems(),
                    tuning=_tuning(run.meta, threads, retune, algos))
    # the roofline is the CPU's: a CUDA-only run has no row to judge by it
    roof = (_roofline(run.meta, threads, remeasure) if any(a.device == "cpu" for a in algos)
            else None)
    store.write_meta(run.run_dir, run.meta)
    return roof


def _run_cases(run: _Run, cases, threads: int, max_memory: int | None, roof,
               journal: store.Journal, progress) -> None:
    """Run every (problem, algorithm) case in order, journaling each row as it exists."""
    places = _devices({a.device for _, a in cases})
    budgets = _budgets(places, max_memory)
    run.meta["memory_budgets"] = budgets
    problem = None
    for spec, algo in cases:
        if problem is None or problem.spec != spec:  # only the current problem's inputs live
            problem = _Problem(spec)
        row = {"run_id": run.meta["run_id"], "threads": threads,
               **run_case(spec, algo, problem, run.config.timing, budgets[algo.device],
                          places[algo.device])}
        row.update(roofline.row_columns(spec, row, _estimate(algo, spec, row), roof))
        journal.append(row)
        if progress:
            progress(row)
    run.meta["machine"]["numba_threading_layer"] = machine.threading_layer()


def _finish(run: _Run, complete: bool) -> pd.DataFrame:
    """Write the rows (Parquet) and the final meta; return the rows."""
    df = store.rows_frame(store.read_journal(run.run_dir))
    if not df.empty:
        store.write_rows(run.run_dir, df)
    run.meta["end"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    run.meta["complete"] = complete
    store.write_meta(run.run_dir, run.meta)
    df.attrs["run_dir"] = str(run.run_dir)
    return df


def run_sweep(config="default", *, results_dir="results", run_id: str | None = None,
              resume=None, threads: int | None = None, max_memory: int | None = None,
              progress: Callable[[dict], None] | None = None,
              entries: Sequence[registry.Algorithm] | None = None,
              on_start: Callable[[Path, int], None] | None = None,
              remeasure: bool = False, retune: bool = False,
              record: bool = True) -> pd.DataFrame:
    """Run a sweep and return its rows (one per problem and algorithm).

    Parameters
    ----------
    config : SweepConfig, preset name or path
    results_dir : path
        Where ``<run-id>/`` is created.
    run_id : str, optional
    resume : path, optional
        A run directory to finish: pairs already in its journal are not run again, and its own
        config is used (``config`` is ignored).
    threads : int, optional
        Numba threads for the whole run (default: Numba's default).  BLAS runs on one thread
        throughout (`BLAS_THREADS`).
    max_memory : int, optional
        Bytes of workspace one case may use (default: half the memory available at the start,
        on the GPU for CUDA rows).
    progress : callable, optional
        Called with each row as it is saved.
    entries : registry entries, optional
        The algorithms to consider (default: the registry); tests pass fakes.
    on_start : callable, optional
        Called with the run directory and the number of cases left, before the first case.
    remeasure : bool
        Measure the machine's roofline (`convbench.roofline`) even when the cache holds it.
        Every row gets its fractions of the roofline's peak and bandwidth; ``meta.json``
        records the roofline and whether it came from the cache.  A resumed run keeps the
        roofline it started with, so that all its rows are judged against one.
    retune : bool
        Measure the CPU kernels' parameters (`convbench.tuning.tune`) before the run, instead
        of using this machine's cached tuning (or the defaults, when it has none).  Every row
        records the parameters it ran (``params``), ``meta.json`` where they came from.
    record : bool
        Add a completed run's rows to this machine's choice database (`convbench.choices`);
        the notes of winners that changed, or stayed within noise, are in
        ``df.attrs["choices"]``.

    Raises
    ------
    SweepInterrupted
        On Ctrl-C, after saving the rows so far.
    """
    run = _open(config, resume)
    algos = select(run.config, entries)
    _create(run, results_dir, run_id)
    threads = threads or run.meta.get("threads") or numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(threads)
    budget = max_memory or int(MEMORY_FRACTION * machine.available_memory())
    cases = [(spec, a) for spec in run.config.problems for a in algos
             if _key(spec, a.name, a.device) not in run.done]
    journal = store.Journal(run.run_dir)
    complete = False
    try:
        with threadpool_limits(BLAS_THREADS, user_api="blas"):
            roof = _start(run, algos, threads, budget, remeasure, retune)
            if on_start:
                on_start(run.run_dir, len(cases))
            _run_cases(run, cases, threads, max_memory, roof, journal, progress)
        complete = True
    except KeyboardInterrupt:
        pass
    finally:
        journal.close()
        df = _finish(run, complete)
    if not complete:
        raise SweepInterrupted(run.run_dir)
    df.attrs["choices"] = choices.record_rows(df) if record and not df.empty else []
    return df
