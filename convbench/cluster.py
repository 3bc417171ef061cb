"""Cluster runs: one sweep spread over Dask workers, journaled here as a local run journals it.

The client (this module) splits the sweep's pending cases into tasks of whole problems (a
problem's inputs and float64 reference are made once on the worker, as a local run makes them
once): one problem a task, or a few when their cases are timed so briefly that Dask's per-task
round trips would show (`problems_per_task`).  It submits each with the
`convbench.worker.RESOURCE` requirement, so that a timing worker runs one task at a time, and
journals every row as its task returns (`convbench.runner.record`: fsynced, one row per key).
Tasks are submitted as the workers free (`_Window`), not all at once.  Scheduling is Dask's: a
worker that dies mid-task loses its task to the scheduler, which runs it again on a live
worker; a task that kills every worker it runs on (``distributed.scheduler.allowed-failures``
times) goes again one problem a task, and a problem that still does becomes ``error`` rows, and
the sweep goes on; rows that arrive twice are journaled once.  A killed client leaves a journal
that ``--resume`` finishes: only the missing cases are submitted.

Rows are made on the workers' machines, not this one: each row names its machine, and
``meta.json`` lists every machine's fingerprint and roofline under ``machines``.  A cluster
run adds nothing to this machine's choice database.

A Dask scheduler runs whatever code its clients send: give it TLS (``--tls-*`` or a Dask
config file) and a listening interface that only the cluster reaches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from . import registry, runner, store, sweep, worker

# Seconds a client waits for the scheduler before it says none answers.
CONNECT_TIMEOUT = 5


def security(ca_file=None, cert=None, key=None):
    """Dask's TLS settings from certificate files, or None (then Dask's config decides)."""
    if not (ca_file or cert or key):
        return None
    if not (ca_file and cert and key):
        raise ValueError("--tls-ca-file, --tls-cert, --tls-key: give all three, or none")
    from distributed.security import Security

    return Security(tls_ca_file=str(ca_file), tls_client_cert=str(cert),
                    tls_client_key=str(key), tls_worker_cert=str(cert),
                    tls_worker_key=str(key), require_encryption=True)


def connect(address: str, tls=None, what: str = "--cluster"):
    """A Dask client of the scheduler at ``address``; a ValueError in one line (starting
    with ``what``, the option or command given the address) when none answers within
    `CONNECT_TIMEOUT` seconds."""
    from distributed import Client
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        parse_host_port(parse_address(address)[1])
    except ValueError as err:
        raise ValueError(f"{what}: {address!r} is not a scheduler address ({err}); expected "
                         "e.g. tcp://10.0.0.1:8786 or tls://HOST:PORT") from None
    _check_tls(address, tls, what)
    try:
        return Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False,
                      security=tls)
    except Exception as err:  # refused or timed out: the same answer
        why = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{what}: no Dask scheduler answers at {address!r} within "
                         f"{CONNECT_TIMEOUT} s ({why[:160]}); start one with: dask scheduler"
                         ) from None


def _check_tls(address: str, tls, what: str) -> None:
    """A tls:// address without certificates, or certificates with another scheme: one line
    (Dask would fail inside its client, and leave it to time out as it is collected)."""
    from distributed.comm.addressing import parse_address
    from distributed.security import Security

    scheme = parse_address(address)[0]
    has_tls = (tls or Security()).get_connection_args("client").get("ssl_context") is not None
    if scheme == "tls" and not has_tls:
        raise ValueError(f"{what}: {address!r} is a TLS address: give --tls-ca-file, "
                         "--tls-cert and --tls-key (or Dask's TLS configuration)")
    if scheme != "tls" and tls is not None:
        raise ValueError(f"{what}: TLS certificates given for {address!r}: use a tls:// "
                         "address")


def check_workers(client, ident: dict) -> None:
    """Refuse the run when a connected worker runs another convbench or kernel set."""
    try:
        theirs = client.run(worker.identity)
    except Exception as err:  # a worker without convbench at all
        raise ValueError(f"--cluster: a worker cannot report its convbench version ({err})"
                         ) from None
    for address, other in theirs.items():
        why = worker.mismatch(ident, other, address)
        if why:
            raise ValueError(f"--cluster: {why}; install the same convbench on both")


# Seconds of timing a task should hold before problems share one.  Each task costs a few
# milliseconds of Dask round trips besides its timing (the scheduler hands a worker its next
# resource-bound task only once the last one is done); a sweep of sub-millisecond cases
# would spend a third of its time there.  A task of several problems costs that once.
TASK_SECONDS = 0.25
# At most this many problems a task: a worker lost mid-task loses no more than that much
# work, and rows still arrive (and are journaled) in small steps.
MAX_PROBLEMS_PER_TASK = 8


def problems_per_task(timing: sweep.TimingConfig, algorithms: int) -> int:
    """How many problems of ``algorithms`` cases each one task takes: as many as fill
    `TASK_SECONDS` at the least a case times (its warmups and values of ``min_time``), one
    or more, `MAX_PROBLEMS_PER_TASK` at most."""
    case = (timing.warmups + timing.values) * timing.min_time * max(algorithms, 1)
    return int(min(MAX_PROBLEMS_PER_TASK, max(1, TASK_SECONDS // case)))


def batches(cases, named: bool, timing: sweep.TimingConfig | None = None
            ) -> list[tuple[list, list]]:
    """The cases as tasks ``(specs, algorithms)``: consecutive problems with the same
    algorithms share a task, `problems_per_task` of them (one per task without ``timing``);
    the algorithms as ``(name, device)`` for the worker's registry, or the entries
    themselves (``named`` False: tests' fakes)."""
    per_problem: list[tuple[object, list]] = []
    for spec, algo in cases:
        if not per_problem or per_problem[-1][0] != spec:
            per_problem.append((spec, []))
        per_problem[-1][1].append((algo.name, algo.device) if named else algo)
    out: list[tuple[list, list]] = []
    for spec, algos in per_problem:
        room = problems_per_task(timing, len(algos)) if timing else 1
        if out and out[-1][1] == algos and len(out[-1][0]) < room:
            out[-1][0].append(spec)
        else:
            out.append(([spec], algos))
    return out


def _note_machine(run: runner.Run, result: dict) -> None:
    """Record a machine the first time one of its rows arrives; the first machine also
    fills the run's ``machine``, ``roofline`` and ``threads``, as a local run's."""
    machines = run.meta.setdefault("machines", {})
    if result["machine"] in machines:
        return
    rec = result["record"]
    machines[result["machine"]] = rec
    if "machine" not in run.meta:
        run.meta.update(machine=rec["fingerprint"], roofline=rec["roofline"],
                        threads=rec["threads"], blas_threads=runner.BLAS_THREADS,
                        tuning=rec.get("tuning"))
    store.write_meta(run.run_dir, run.meta)


def _lost_rows(specs, algos, err) -> list[dict]:
    """``error`` rows for the cases of a task that killed every worker it ran on: the sweep
    goes on without them (as a local run goes on past a kernel's exception)."""
    entries = [a if isinstance(a, registry.Algorithm) else registry.get(*a) for a in algos]
    why = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return [{"machine": None, **runner.case_row(spec, a, "error",
                                                f"KilledWorker: {why}"[:500])}
            for spec in specs for a in entries]


class _Window:
    """The tasks in flight: as many as the timing workers can run at once, plus one ready to
    start when a worker frees (a worker then starts it without waiting for this client).

    Submitting every task at once would assign them all to the workers there are now: a
    worker that joins later would get none, and a worker that dies would count a failure
    against every task it held (the scheduler gives a task up after
    ``distributed.scheduler.allowed-failures`` of those).  The capacity is read from the
    scheduler at most once a second."""

    def __init__(self, client, submit: Callable, batches: list):
        from collections import deque

        from distributed import as_completed

        self.client, self.submit, self.todo = client, submit, deque(batches)
        self.tasks: dict = {}
        self.done = as_completed(loop=client.loop)
        self._capacity, self._read = 1, -1.0

    def capacity(self) -> int:
        """Tasks the timing workers can run at once (their ``node`` resources), plus one."""
        if time.monotonic() - self._read >= 1.0:
            workers = self.client.scheduler_info(n_workers=-1)["workers"].values()
            self._capacity = max(int(sum(w.get("resources", {}).get(worker.RESOURCE, 0)
                                         for w in workers)), 1)
            self._read = time.monotonic()
        return self._capacity + 1

    def fill(self) -> None:
        while len(self.tasks) < self.capacity() and self.todo:
            batch = self.todo.popleft()
            fut = self.submit(*batch)
            self.tasks[fut] = batch
            self.done.add(fut)

    def cancel(self) -> None:
        self.client.cancel(list(self.tasks))


def _collect(window: _Window, run: runner.Run, journal: store.Journal, progress) -> None:
    """Journal each task's rows as it completes, keeping the window full.  A task of several
    problems that killed its workers goes again one problem a task, first in line, so that
    only the problem that kills becomes error rows.  Other exceptions (a refused version)
    are re-raised."""
    from distributed import KilledWorker

    window.fill()
    for fut in window.done:
        batch = window.tasks.pop(fut)
        try:
            result = fut.result()
        except KilledWorker as err:
            specs, algos = batch
            if len(specs) > 1:
                window.todo.extendleft(([spec], algos) for spec in reversed(specs))
                rows = []
            else:
                rows = _lost_rows(*batch, err)
        else:
            _note_machine(run, result)
            rows = result["rows"]
        fut.release()
        window.fill()
        for row in rows:
            runner.record(run, row, journal, progress)


def run_sweep(config="default", scheduler: str = "", *, results_dir="results",
              run_id: str | None = None, resume=None,
              progress: Callable[[dict], None] | None = None,
              entries: Sequence | None = None,
              on_start: Callable[[Path, int], None] | None = None, tls=None) -> pd.DataFrame:
    """Run a sweep on the Dask cluster whose scheduler is at ``scheduler``; return its rows.

    The parameters are `convbench.runner.run_sweep`'s; threads, memory budget, roofline and
    kernel parameters are each worker's own (``convbench worker --threads N``).  ``entries``
    (tests' fakes) are sent to the workers with the tasks.

    Raises
    ------
    ValueError
        No scheduler answers (nothing is written), or a worker runs another convbench
        version or kernel set.
    SweepInterrupted
        On Ctrl-C, after saving the rows so far.
    """
    run = runner.open_run(config, resume)
    algos = runner.select(run.config, entries)
    ident = worker.identity()
    client = connect(scheduler, tls)
    try:
        check_workers(client, ident)
        return _run(client, run, algos, ident, results_dir, run_id, progress,
                    entries is None, on_start, scheduler)
    finally:
        client.close()


def _run(client, run, algos, ident, results_dir, run_id, progress, named, on_start,
         scheduler) -> pd.DataFrame:
    """Create the run, submit its pending cases, journal their rows, finish the run."""
    runner.create_run(run, results_dir, run_id)
    journal = store.Journal(run.run_dir)  # before any write: a run still going is refused
    run.meta.update(cluster={"scheduler": scheduler, "client": worker.describe(ident)},
                    algorithms=runner.algorithm_records(algos))
    store.write_meta(run.run_dir, run.meta)
    cases = runner.pending(run, algos)
    complete = False
    window = _Window(client, lambda specs, names: client.submit(
        worker.run_batch, specs, names, run.config.timing, ident,
        resources={worker.RESOURCE: 1}, pure=False), batches(cases, named, run.config.timing))
    try:
        if on_start:
            on_start(run.run_dir, len(cases))
        _collect(window, run, journal, progress)
        complete = True
    except KeyboardInterrupt:
        window.cancel()
    finally:
        journal.close()
        df = runner.finish_run(run, complete)
    if not complete:
        raise runner.SweepInterrupted(run.run_dir)
    return df
