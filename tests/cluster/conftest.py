"""A Dask cluster on 127.0.0.1, started and stopped by the tests.

Most tests share one in-process cluster (``processes=False``: the worker's tasks run in this
process's threads, so monkeypatches reach them); the worker-kill test has real worker
processes of its own.  Workers take the timing setup without the kernel warm-up: the tests
run the fake registry (`tests.fakes`), whose entries travel with the tasks.
"""

import pytest


def local_cluster(processes: bool, **kwargs):
    """One timing worker (a nanny restarts it if it dies) and its scheduler on 127.0.0.1."""
    import distributed

    from convbench import worker

    protocol = "tls" if "security" in kwargs else "tcp"
    return distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=processes, protocol=protocol,
        host="127.0.0.1", dashboard_address=":0", resources={worker.RESOURCE: 1},
        plugins={worker.TimingSetup(1, warm=False)}, **kwargs)


@pytest.fixture(scope="module")
def scheduler():
    """The address of an in-process scheduler with one timing worker."""
    with local_cluster(processes=False) as lc:
        yield lc.scheduler_address
