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

from convbench_kernels.reference import (
    composed_weight,
    reference_conv2d,
    reference_conv2d_input,
    reference_conv2d_weight,
)

from . import (
    accuracy,
    cache,
    choices,
    devices,
    machine,
    plugins,
    registry,
    roofline,
    store,
    sweep,
    tuning,
)
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

    def _geometry(self) -> dict:
        s = self.spec
        return dict(stride=(s.sh, s.sw), pads=s.pads, dilation=(s.dh, s.dw), groups=s.groups)

    def _ref(self, x, w) -> np.ndarray:
        return reference_conv2d(x, w, **self._geometry())

    def _array(self, name: str, shape) -> np.ndarray:
        return self._rng(name).standard_normal(shape).astype(self.spec.dtype)

    def _separable_weights(self):
        s = self.spec
        rng = self._rng("separable")
        return (rng.standard_normal((s.c, 1, s.r, s.s)).astype(s.dtype),
                rng.standard_normal((s.k, s.c, 1, 1)).astype(s.dtype))

    def inputs(self, operator: str):
        """``(argument, prepared operand, reference)`` of the spec's direction: ``(x, w, y)``
        forward, ``(dy, w, dx)`` for the gradient of the input, ``(dy, x, dw)`` for the
        weights', for a standard (``conv``) or (forward) ``separable`` operator."""
        if operator not in self._cache:
            self._cache[operator] = self._make(operator)
        return self._cache[operator]

    def _make(self, operator: str):
        s = self.spec
        if s.direction == "bwd_d":
            dy = self._array("dy", s.output_shape)
            if operator == "separable":  # the pair's input gradient: that of the composed conv
                ws = self._separable_weights()
                return dy, ws, reference_conv2d_input(dy, composed_weight(*ws), (s.h, s.w),
                                                      **self._geometry())
            w = self._array("w", s.weight_shape)
            return dy, w, reference_conv2d_input(dy, w, (s.h, s.w), **self._geometry())
        if s.direction == "bwd_w":
            dy, x = self._array("dy", s.output_shape), self._array("x", s.input_shape)
            return dy, x, reference_conv2d_weight(x, dy, (s.r, s.s), **self._geometry())
        x = self._array("x", s.input_shape)
        if operator == "separable":
            # the separable operator equals a standard conv with the composed weights
            ws = self._separable_weights()
            return x, ws, self._ref(x, composed_weight(*ws))
        w = self._array("w", s.weight_shape)
        return x, w, self._ref(x, w)


def operands(spec: ConvSpec, operator: str = "conv"):
    """``(argument, prepared operand, float64 reference)`` of ``spec`` in its direction, as a
    sweep makes them (seeded by the problem's id)."""
    return _Problem(spec).inputs(operator)


def problem_columns(spec: ConvSpec) -> dict:
    def enc(v):
        return "x".join(map(str, v)) if isinstance(v, tuple) else str(v)

    pt, pb, pl, pr = spec.pads
    return {
        "problem": spec.id, "name": spec.name, "count": spec.count,
        "n": spec.n, "c": spec.c, "h": spec.h, "w": spec.w, "k": spec.k, "r": spec.r,
        "s": spec.s, "stride": enc(spec.stride), "padding": enc(spec.padding),
        "dilation": enc(spec.dilation), "groups": spec.groups, "dtype": spec.dtype,
        "direction": spec.direction,
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


def case_row(spec: ConvSpec, algo: registry.Algorithm, status: str = "ok",
             reason: str = "") -> dict:
    """The columns every row of a case has, whatever its outcome."""
    return {**problem_columns(spec), "algorithm": algo.name, "family": algo.family,
            "device": algo.device, "operator": algo.operator, "status": status,
            "reason": reason, "tolerance": algo.tolerance[spec.dtype], "warnings": ""}


def run_case(spec: ConvSpec, algo: registry.Algorithm, problem: _Problem,
             timing: sweep.TimingConfig, memory_budget: int,
             device: devices.Host | str) -> dict:
    """One row: the outcome of ``algo`` on ``spec``, on ``device`` (a `devices.Host` or
    `devices.Cuda`, or the reason the algorithm's device cannot be used)."""
    row = case_row(spec, algo)
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
        out = device.nan(spec.result_shape, spec.dtype)
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
class Run:
    """A run being made: its sweep, directory, ``meta.json`` content and the row keys it
    already holds (a resumed run's)."""

    config: sweep.SweepConfig
    meta: dict
    run_dir: Path | None = None
    done: set = field(default_factory=set)


def open_run(config, resume) -> Run:
    """The run to make: a resumed run's own config, meta and finished rows, or a new one
    (nothing is written yet: bad input must leave no directory behind)."""
    if resume is None:
        return Run(resolve_config(config), meta={})
    run_dir = Path(resume)
    meta = store.read_meta(run_dir)
    meta.pop("end", None)
    meta["resumed"] = [*meta.get("resumed", []), time.strftime("%Y-%m-%dT%H:%M:%S%z")]
    return Run(sweep.from_dict(meta["config"], source=f"{run_dir}/{store.META}"), meta,
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


def create_run(run: Run, results_dir, run_id: str | None) -> None:
    """Make a new run's directory and first meta (a resumed run has both)."""
    if run.run_dir is not None:
        return
    run_id = run_id or store.new_run_id()
    run.run_dir = Path(results_dir) / run_id
    run.run_dir.mkdir(parents=True, exist_ok=False)
    run.meta = {"run_id": run_id, "config": run.config.to_dict(),
                "start": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def algorithm_records(algos) -> list[dict]:
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


def _start(run: Run, algos, threads: int, budget: int, remeasure: bool, retune: bool):
    """Record the run's settings and machine in ``meta.json``; return its roofline and the
    machine's id."""
    run.meta.update(threads=threads, blas_threads=BLAS_THREADS, memory_budget=budget,
                    machine=machine.fingerprint(), algorithms=algorithm_records(algos),
                    plugin_problems=plugins.problems(),
                    tuning=_tuning(run.meta, threads, retune, algos))
    # the roofline is the CPU's: a CUDA-only run has no row to judge by it
    roof = (_roofline(run.meta, threads, remeasure) if any(a.device == "cpu" for a in algos)
            else None)
    machine_id = cache.machine_id(threads)
    run.meta["machines"] = {**run.meta.get("machines", {}),
                            machine_id: store.machine_record(run.meta["machine"], run.meta.get(
                                "roofline"), threads)}
    store.write_meta(run.run_dir, run.meta)
    return roof, machine_id


def pending(run: Run, algos) -> list[tuple[ConvSpec, registry.Algorithm]]:
    """The (problem, algorithm) cases of the run that its journal does not hold yet."""
    return [(spec, a) for spec in run.config.problems for a in algos
            if _key(spec, a.name, a.device) not in run.done]


def case_rows(cases, timing: sweep.TimingConfig, budgets: dict, threads: int, roof,
              machine_id: str):
    """Each case's row, in order, as soon as it exists: the measurement (`run_case`, within
    its device's workspace budget, `case_budgets`), the threads and machine it ran on, and
    its place under the roofline.  Every run makes its rows here, on this machine or on a
    cluster's worker; the run that journals them adds its ``run_id``."""
    places = _devices({a.device for _, a in cases})
    problem = None
    for spec, algo in cases:
        if problem is None or problem.spec != spec:  # only the current problem's inputs live
            problem = _Problem(spec)
        row = {"machine": machine_id, "threads": threads,
               **run_case(spec, algo, problem, timing, budgets[algo.device],
                          places[algo.device])}
        row.update(roofline.row_columns(spec, row, _estimate(algo, spec, row), roof))
        yield row


def record(run: Run, row: dict, journal: store.Journal, progress=None) -> bool:
    """Journal ``row`` (fsynced) unless the run already holds its key: a row is journaled
    once, even when a cluster hands back a retried case twice.  Whether it was journaled."""
    key = _key(row)
    if key in run.done:
        return False
    journal.append({"run_id": run.meta["run_id"], **row})
    run.done.add(key)
    if progress:
        progress(row)
    return True


def case_budgets(cases, max_memory: int | None) -> dict:
    """The workspace budget of each device the cases run on (`_budgets`)."""
    return _budgets(_devices({a.device for _, a in cases}), max_memory)


def _run_cases(run: Run, cases, threads: int, max_memory: int | None, roof, machine_id: str,
               journal: store.Journal, progress) -> None:
    """Run every (problem, algorithm) case in order, journaling each row as it exists."""
    budgets = case_budgets(cases, max_memory)
    run.meta["memory_budgets"] = budgets
    for row in case_rows(cases, run.config.timing, budgets, threads, roof, machine_id):
        record(run, row, journal, progress)
    run.meta["machine"]["numba_threading_layer"] = machine.threading_layer()


def finish_run(run: Run, complete: bool) -> pd.DataFrame:
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
    run = open_run(config, resume)
    algos = select(run.config, entries)
    create_run(run, results_dir, run_id)
    threads = threads or run.meta.get("threads") or numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(threads)
    budget = max_memory or int(MEMORY_FRACTION * machine.available_memory())
    cases = pending(run, algos)
    journal = store.Journal(run.run_dir)
    complete = False
    try:
        with threadpool_limits(BLAS_THREADS, user_api="blas"):
            roof, machine_id = _start(run, algos, threads, budget, remeasure, retune)
            if on_start:
                on_start(run.run_dir, len(cases))
            _run_cases(run, cases, threads, max_memory, roof, machine_id, journal, progress)
        complete = True
    except KeyboardInterrupt:
        pass
    finally:
        journal.close()
        df = finish_run(run, complete)
    if not complete:
        raise SweepInterrupted(run.run_dir)
    df.attrs["choices"] = choices.record_rows(df) if record and not df.empty else []
    return df
