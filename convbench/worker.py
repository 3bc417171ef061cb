"""The worker side of a cluster run: a Dask worker set up to time, and the task it runs.

A machine that times convolutions must run one case at a time: two timings on the same cores
inflate each other.  So a timing worker is one process with one Dask thread, it offers one
unit of the `RESOURCE` (``node=1``) and every timing task asks for one, and it takes the
name ``convbench@HOST``, which the scheduler gives to one worker only: a second
``convbench worker`` on the same host is refused by the scheduler itself.

Before it accepts work (`TimingSetup`, a Dask worker plugin, runs before the worker registers
with the scheduler) the process is set up as a local run sets itself up: Numba's threads
fixed, BLAS on one thread, this machine's cached kernel parameters installed, its roofline
read from the cache (or measured, once), and every default CPU kernel compiled into Numba's
cache (`convbench.compiling`, all cores), so that no task pays for compilation in its
timings' neighbourhood.

`run_batch` is the task: the rows of one problem's cases, made by
`convbench.runner.case_rows` exactly as a local run makes them, with the machine's record.
It refuses to run for a client of another convbench version or kernel set (`identity`).
"""

from __future__ import annotations

import functools
import hashlib
import platform
from dataclasses import dataclass
from importlib import resources

import numba
from distributed.diagnostics.plugin import WorkerPlugin
from threadpoolctl import threadpool_limits

from . import (
    __version__,
    cache,
    compiling,
    machine,
    registry,
    roofline,
    runner,
    store,
    sweep,
    tuning,
)
from .spec import ConvSpec

# The resource each timing worker offers once and each timing task needs: one task per machine.
RESOURCE = "node"

# Seconds a worker waits for its scheduler, at the start and when it goes away.
CONNECT_TIMEOUT = 30


class Mismatch(ValueError):
    """A worker and a client that run different convbench versions or kernel sets."""


@functools.cache
def kernels_digest() -> str:
    """A digest of the kernels' source (read once per process: every task checks it)."""
    digest = hashlib.sha256()
    for f in sorted(resources.files("convbench_kernels").rglob("*.py"), key=str):
        digest.update(f.read_bytes())
    return digest.hexdigest()[:12]


def identity() -> dict:
    """What a client and its workers must share: the convbench version and the kernel set (the
    registered algorithms and the kernels' source)."""
    return {"convbench": __version__, "kernels": kernels_digest(),
            "algorithms": sorted(f"{a.name}/{a.device}" for a in registry.algorithms())}


def describe(ident: dict) -> str:
    """``convbench 0.1.0 (kernels 3fa2c1d0e9b7, 14 algorithms)``."""
    return (f"convbench {ident['convbench']} (kernels {ident['kernels']}, "
            f"{len(ident['algorithms'])} algorithms)")


def mismatch(client: dict, worker: dict, where: str) -> str | None:
    """The sentence refusing a worker whose identity differs from the client's, else None."""
    if client == worker:
        return None
    return f"worker {where} runs {describe(worker)}, the client {describe(client)}"


@dataclass
class Setup:
    """A timing process's settings and what it knows of its machine."""

    threads: int
    machine_id: str
    roof: roofline.Roofline | None
    record: dict


_SETUP: Setup | None = None


def configure(threads: int | None = None, warm: bool = True) -> Setup:
    """Set this process up for timing (once; later calls return the same setup)."""
    global _SETUP
    if _SETUP is not None:
        return _SETUP
    threads = threads or numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(threads)
    threadpool_limits(runner.BLAS_THREADS, user_api="blas")  # process-wide, kept
    chosen = tuning.use(threads)
    try:
        roof, _ = roofline.load_or_measure(threads)
    except Exception:  # the rows are worth having without their fractions, as in a local run
        roof = None
    if warm:
        warm_up()
    fingerprint = {**machine.fingerprint(), "numba_threading_layer": machine.threading_layer()}
    record = {**store.machine_record(fingerprint, roof.to_dict() if roof else None, threads),
              "tuning": chosen.to_dict()}
    _SETUP = Setup(threads, cache.machine_id(threads), roof, record)
    return _SETUP


def warm_up() -> None:
    """Compile every default CPU kernel, on every path, dtype and direction, into Numba's
    cache, in as many processes as this machine has cores (`convbench.compiling`): the
    worker's tasks then load them instead of compiling."""
    compiling.compile_kernels([a for a in compiling.compilable() if a.default])


class TimingSetup(WorkerPlugin):
    """`configure` as a Dask worker plugin: it runs before the worker registers with the
    scheduler, so the worker accepts no task before it is set up."""

    name = "convbench-timing"

    def __init__(self, threads: int | None = None, warm: bool = True):
        self.threads, self.warm = threads, warm

    def setup(self, worker):
        configure(self.threads, self.warm)


def worker_name() -> str:
    """The one name a timing worker of this host may register under."""
    return f"convbench@{platform.node() or 'unknown'}"


def run_batch(specs: list[ConvSpec], algos: list, timing: sweep.TimingConfig,
              client: dict) -> dict:
    """The task: the rows of ``algos`` (registry names, or entries a test passes) on
    ``specs``, and the machine's id and record.

    Raises
    ------
    Mismatch
        When the client runs another convbench version or kernel set than this worker.
    """
    why = mismatch(client, identity(), platform.node())
    if why:
        raise Mismatch(why)
    setup = configure(warm=False)  # a plain `dask worker` offering the resource: set up now
    numba.set_num_threads(setup.threads)  # Numba's thread count is per calling thread
    entries = [registry.get(*a) if isinstance(a, tuple) else a for a in algos]
    cases = [(spec, a) for spec in specs for a in entries]
    budgets = runner.case_budgets(cases, None)  # each device's share of its free memory now
    rows = list(runner.case_rows(cases, timing, budgets, setup.threads, setup.roof,
                                 setup.machine_id))
    return {"machine": setup.machine_id, "record": setup.record, "rows": rows}


def _causes(err: BaseException) -> str:
    """The messages of an exception and of every exception behind it."""
    texts = []
    while err is not None:
        texts.append(f"{type(err).__name__}: {err}")
        err = err.__cause__ or err.__context__
    return " <- ".join(texts)


def refuse_second(scheduler: str, tls=None) -> None:
    """A ValueError when the scheduler already has a timing worker of this host (checked
    before the minutes of compiling; the scheduler refuses the name again at the start)."""
    from . import cluster

    with cluster.connect(scheduler, tls, what="worker") as client:
        info = client.scheduler_info(n_workers=-1)
    if any(w.get("name") == worker_name() for w in info["workers"].values()):
        raise ValueError(_second(scheduler))


def _second(scheduler: str) -> str:
    return (f"worker: the scheduler at {scheduler} already has a timing worker on this host "
            f"({worker_name()}): two would time on the same cores")


def listen_host(scheduler: str) -> str:
    """The address of the interface that reaches the scheduler: the one a worker listens on
    unless told otherwise (Dask's default is every interface, and a worker runs the code its
    scheduler sends)."""
    from distributed.comm.addressing import get_address_host
    from distributed.utils import get_ip

    return get_ip(get_address_host(scheduler))


def serve(scheduler: str, threads: int | None = None, host: str | None = None,
          tls=None) -> None:
    """Run a timing worker for the scheduler at ``scheduler`` until it stops.

    Raises
    ------
    ValueError
        When the scheduler does not answer, or already has a timing worker of this host.
    """
    import asyncio

    from distributed import Worker

    refuse_second(scheduler, tls)
    # Set up and compile first: Dask bounds a worker's start (plugins included) by its
    # connect timeout, and a cold compile of every kernel takes minutes.
    configure(threads, warm=True)

    host = host or listen_host(scheduler)

    async def main():
        async with Worker(scheduler, nthreads=1, resources={RESOURCE: 1}, name=worker_name(),
                          plugins={TimingSetup(threads)}, host=host, security=tls,
                          death_timeout=CONNECT_TIMEOUT, dashboard=False) as w:
            await w.finished()

    try:
        asyncio.run(main())
    except Exception as err:
        text = _causes(err)
        if "name taken" in text:
            raise ValueError(_second(scheduler)) from None
        raise ValueError(f"worker: cannot join the scheduler at {scheduler!r} ({text[:300]})"
                         ) from None
