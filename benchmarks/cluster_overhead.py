"""What a cluster run costs over a local run: the same tiny sweep both ways, wall time each.

``--problems`` tiny problems (4 channels, 8 to 16 pixels, filters 1 to 9, strides 1 and 2,
each timed as the smoke preset times: sub-millisecond values) make tasks of up to
`convbench.cluster.MAX_PROBLEMS_PER_TASK` problems (`convbench.cluster.problems_per_task`), so
the per-task cost of Dask (submit, schedule, send the rows back) and of journaling shows
against the measuring itself; ``--per-task 1`` makes one task a problem.

The cluster is a scheduler and one timing worker (`convbench.worker.TimingSetup`, one Dask
thread, the ``node`` resource) in a separate process on 127.0.0.1, started and set up before
the clock starts, as a standing cluster would be; the local run comes after an untimed local
warm-up, so that neither side pays for compiling.  Both use one Numba thread and read one
roofline from a private cache directory, measured once before either run (a roofline measured
while other work kept the cores busy is never cached, so a local run on a busy machine would
measure it again each time, and the comparison would be of that).  Run it from the
repository root:

    python benchmarks/cluster_overhead.py [--problems 200] [--algo direct] [--per-task 8]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from convbench import cache, cluster, machine, roofline, runner, sweep, worker


def config(problems: int, algo: str) -> sweep.SweepConfig:
    """``problems`` tiny problems (a multiple of 10: filters 1-9 by strides 1, 2)."""
    ks = list(range(4, 4 + 4 * max(problems // 50, 1), 4))
    hs = [8, 10, 12, 14, 16][:max(min(problems // (10 * len(ks)), 5), 1)]
    cfg = sweep.from_dict({
        "name": "cluster-overhead", "algorithms": [algo],
        "timing": {"min_time": 0.0005, "values": 3, "max_seconds": 0.2, "warmups": 1},
        "grid": {"n": [1], "c": [4], "k": ks, "h": hs, "filter": [1, 3, 5, 7, 9],
                 "stride": [1, 2], "padding": ["same"]}})
    return cfg


def local(cfg: sweep.SweepConfig, results: str) -> float:
    t0 = time.perf_counter()
    runner.run_sweep(cfg, results_dir=results, threads=1, record=False)
    return time.perf_counter() - t0


def on_cluster(cfg: sweep.SweepConfig, results: str) -> float:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, protocol="tcp",
                      host="127.0.0.1", dashboard_address=":0",
                      resources={worker.RESOURCE: 1},
                      plugins={worker.TimingSetup(1, warm=True)}) as lc, \
            Client(lc.scheduler_address, set_as_default=False) as client:
        client.wait_for_workers(1)
        t0 = time.perf_counter()
        cluster.run_sweep(cfg, lc.scheduler_address, results_dir=results)
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problems", type=int, default=200)
    ap.add_argument("--algo", default="direct")
    ap.add_argument("--per-task", type=int, default=cluster.MAX_PROBLEMS_PER_TASK,
                    help="at most this many problems a task")
    args = ap.parse_args()
    cluster.MAX_PROBLEMS_PER_TASK = args.per_task
    cfg = config(args.problems, args.algo)
    per_task = cluster.problems_per_task(cfg.timing, 1)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CONVBENCH_CACHE_DIR"] = os.path.join(tmp, "cache")  # workers inherit it
        roof, _ = roofline.load_or_measure(1)
        cache.write(roofline.cache_path(roof.key), roof.to_dict())
        runner.run_sweep(sweep.preset("smoke"), results_dir=tmp, threads=1, record=False)
        t_local = local(cfg, tmp)
        t_cluster = on_cluster(cfg, tmp)
    print(f"CPU: {machine.cpu_model()}")
    print(f"{len(cfg.problems)} problems x {args.algo}, {per_task} a task "
          f"({-(-len(cfg.problems) // per_task)} tasks), 1 thread")
    print(f"local run:   {t_local:7.2f} s")
    print(f"cluster run: {t_cluster:7.2f} s  (local scheduler, one worker process)")
    print(f"ratio:       {t_cluster / t_local:7.2f}")


if __name__ == "__main__":
    main()
