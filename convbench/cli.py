"""The ``convbench`` command line.

Bad input exits with status 2 and one line naming the problem, never a traceback, and
writes no result files.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import sys
import warnings
from pathlib import Path

from . import plugins, registry, sweep
from .spec import DIRECTIONS, DTYPES


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, status 2 (argparse would add the usage block)
        self.exit(2, f"convbench: error: {message}\n")


def _size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"expected a size such as 512M or 4G, got {text!r}")
    return int(float(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " "))


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return v


def _names(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _check(given, option: str, what: str, allowed) -> None:
    """A ValueError naming ``option``, the first of ``given`` not ``allowed``, and those."""
    bad = [g for g in given if g not in allowed]
    if bad:
        raise ValueError(f"{option}: unknown {what} {bad[0]!r} (allowed: {', '.join(allowed)})")


def _list(args) -> int:
    rows = [(a.name, a.device, a.family, ("" if a.default else "(opt-in) ") + a.doc)
            for a in registry.algorithms(args.device)]
    width = max(len(r[0]) for r in rows)
    print(f"{'algorithm':<{width}}  device  family     what it computes")
    for name, device, family, doc in rows:
        print(f"{name:<{width}}  {device:<6}  {family:<9}  {doc}")
    if any(a.family == "baseline" for a in registry.algorithms(args.device)):
        print("baseline: another library's convolution, measured alike and compared against, "
              "never ranked;\nopt-in: run only when named (--algo NAME or algorithms = [...])")
    print()
    print("presets (convbench run sweep --preset NAME):")
    names = sweep.preset_names()
    width = max(map(len, names))
    for name in names:
        cfg = sweep.preset(name)
        print(f"  {name:<{width}} {len(cfg.problems):>4} problems  {cfg.description}")
    return 0


def _config(args) -> sweep.SweepConfig:
    if args.config:
        cfg = sweep.load_config(args.config)
    elif args.batch:
        cfg = sweep.load_batch(args.batch)
    else:
        cfg = sweep.preset(args.preset or "default")
    if args.algo:
        _check(args.algo, "--algo", "algorithm", sorted({a.name for a in registry.algorithms()}))
        cfg = dataclasses.replace(cfg, algorithms=args.algo)
    if args.device:
        _check(args.device, "--device", "device", registry.DEVICES)
        cfg = dataclasses.replace(cfg, devices=args.device)
    if args.dir:
        _check(args.dir, "--dir", "direction", DIRECTIONS)
        cfg = cfg.with_directions(args.dir)
    return cfg


def _run(args) -> int:
    from tqdm import tqdm

    from . import runner, store

    if not args.cluster and (args.tls_ca_file or args.tls_cert or args.tls_key):
        raise ValueError("--tls-ca-file, --tls-cert, --tls-key: only with --cluster")
    if args.resume:
        store.read_meta(args.resume)  # a clear error before anything is touched
        cfg = None
    else:
        cfg = _config(args)
    bar = None

    def on_start(run_dir: Path, todo: int):
        nonlocal bar
        meta = store.read_meta(run_dir)
        for key in ("blas_warning", "load_warning"):
            if (meta.get("machine") or {}).get(key):
                print(f"warning: {meta['machine'][key]}", file=sys.stderr)
        note = (meta.get("tuning") or {}).get("note")
        if note and meta["tuning"].get("source") == "defaults":
            print(f"note: {note}", file=sys.stderr)
        where = (f"on the cluster at {args.cluster}" if args.cluster
                 else f"{meta['threads']} threads")
        print(f"run {run_dir} ({todo} cases, {where})", file=sys.stderr)
        bar = tqdm(total=todo, unit="case", dynamic_ncols=True, file=sys.stderr, disable=None)

    def progress(row: dict):
        bar.set_postfix_str(f"{row['problem']} {row['algorithm']}: {row['status']}")
        bar.update()

    try:
        if args.cluster:
            df = _cluster_run(args, cfg, progress, on_start)
        else:
            df = runner.run_sweep(cfg, results_dir=args.results_dir, resume=args.resume,
                                  threads=args.threads, max_memory=args.max_memory,
                                  progress=progress, on_start=on_start,
                                  remeasure=args.remeasure, retune=args.retune,
                                  record=not args.no_record)
    except runner.SweepInterrupted as stop:
        if bar:
            bar.close()
        again = f" --cluster {args.cluster}" if args.cluster else ""
        print(f"\ninterrupted; rows so far are saved. Resume with: convbench run sweep "
              f"--resume {stop.run_dir}{again}", file=sys.stderr)
        return 130
    finally:
        if bar:
            bar.close()
    run_dir = Path(df.attrs["run_dir"])
    counts = df["status"].value_counts().to_dict()
    print(f"results: {run_dir}  ({', '.join(f'{v} {k}' for k, v in counts.items())})")
    for note in df.attrs.get("choices", []):
        print(f"choices: {note}", file=sys.stderr)
    code = 0
    try:
        print(f"report:  {_write_report([run_dir], Path(args.reports_dir) / run_dir.name)}")
    except Exception as err:  # the rows are saved: say so and how to retry, and go on
        print(f"convbench: error: report not written ({type(err).__name__}: {err}); the "
              f"results are saved, retry with: convbench report {run_dir}", file=sys.stderr)
        code = 1
    _print_winners(df)
    ratios = ratio_table(df)
    if ratios:
        print()
        print(ratios)
    steps = training_table(df)
    if steps:
        print()
        print(steps)
    errors = df[df["status"] == "error"]
    for _, row in errors.iterrows():
        print(f"error: {row['problem']} {row['algorithm']}: {row['reason']}", file=sys.stderr)
    return code


def training_table(df) -> str:
    """`convbench.analysis.training_step` as text ("" when no layer ran in all three
    directions): per layer each direction's best time and algorithm, the step, torch's."""
    from . import analysis

    steps = analysis.training_step(df)
    if steps.empty:
        return ""
    cell = lambda r, d: f"{r[d + '_s'] * 1e3:.3g} {r[d + '_by']}"  # noqa: E731
    table = "\n".join(
        f"{r['name'] or r['problem']:>28}  {cell(r, 'fwd'):>22}  {cell(r, 'bwd_d'):>22}  "
        f"{cell(r, 'bwd_w'):>22}  {r['step_s'] * 1e3:8.3g}  {r['baseline_step_s'] * 1e3:8.3g}"
        f"  {r['vs_baseline']:6.2f}" for _, r in steps.iterrows())
    head = (f"{'layer':>28}  {'fwd ms':>22}  {'bwd_d ms':>22}  {'bwd_w ms':>22}  "
            f"{'step ms':>8}  {'torch ms':>8}  {'ratio':>6}")
    return f"training step (best algorithm per direction; ratio: step / torch's)\n{head}\n{table}"


# Options of a local run that a cluster run leaves to each worker.
_WORKER_OPTIONS = {"threads": "--threads", "max_memory": "--max-memory",
                   "remeasure": "--remeasure", "retune": "--retune"}


def _cluster_module():
    """`convbench.cluster`, or a ValueError saying which extra installs it."""
    try:
        from . import cluster
    except ImportError:
        raise ValueError("--cluster: Dask distributed is not installed (pip install "
                         "'convbench[cluster]')") from None
    return cluster


def _cluster_run(args, cfg, progress, on_start):
    """The sweep on the Dask cluster at ``args.cluster``."""
    for attr, flag in _WORKER_OPTIONS.items():
        if getattr(args, attr):
            raise ValueError(f"{flag}: not with --cluster; each worker sets its own "
                             "(convbench worker --threads N)")
    cluster = _cluster_module()
    tls = cluster.security(args.tls_ca_file, args.tls_cert, args.tls_key)
    return cluster.run_sweep(cfg, args.cluster, results_dir=args.results_dir,
                             resume=args.resume, progress=progress, on_start=on_start, tls=tls)


def _worker(args) -> int:
    cluster = _cluster_module()
    from . import worker

    tls = cluster.security(args.tls_ca_file, args.tls_cert, args.tls_key)
    print(f"{worker.worker_name()}: compiling the kernels, then joining {args.scheduler}",
          file=sys.stderr)
    worker.serve(args.scheduler, args.threads, args.host, tls)
    return 0


def _compile(args) -> int:
    from . import compiling

    algos = compiling.compilable()
    if args.algo:
        _check(args.algo, "--algo", "algorithm", [a.name for a in algos])
        algos = [a for a in algos if a.name in args.algo]
    dtypes = args.dtype or DTYPES
    _check(dtypes, "--dtype", "dtype", DTYPES)
    directions = args.dir or DIRECTIONS
    _check(directions, "--dir", "direction", DIRECTIONS)
    print(f"compiling for {registry.cpu_target().describe()} into Numba's cache "
          f"({_numba_cache_dir()})", file=sys.stderr)

    def done(names, dtype, seconds):
        print(f"{seconds:6.1f} s  {', '.join(names)} ({dtype})", file=sys.stderr)

    total = compiling.compile_kernels(algos, dtypes, directions, args.processes, done)
    print(f"compiled in {total:.1f} s")
    return 0


def _numba_cache_dir() -> str:
    """Where Numba caches compiled kernels: ``NUMBA_CACHE_DIR``, else beside their sources."""
    import numba

    return numba.config.CACHE_DIR or "__pycache__ beside the kernels' sources"


def _tls_options(p) -> None:
    p.add_argument("--tls-ca-file", metavar="FILE", help="TLS: the CA certificate")
    p.add_argument("--tls-cert", metavar="FILE", help="TLS: this side's certificate")
    p.add_argument("--tls-key", metavar="FILE", help="TLS: this side's private key")


def ratio_table(df, baseline: str = "torch") -> str:
    """`convbench.analysis.baseline_ratios` as text for a terminal ("" when the run has no
    counted baseline row): one line per layer, a column per algorithm, the geometric mean."""
    import pandas as pd

    from . import analysis, baselines

    t = analysis.baseline_ratios(df, baseline)
    if t.empty:
        return ""
    name = baselines.title(baseline)
    algos = analysis.baseline_ratio_algorithms(t)

    def ratio(v):
        return "-" if v != v else f"{v:.2f}"  # NaN: did not run, or not accurately

    shown = {"layer": t["layer"],
             f"{baseline} ms": [("" if v != v else f"{v * 1e3:.3f}") for v in t["baseline_s"]],
             **{baselines.title(a): [ratio(v) for v in t[a]] for a in algos},
             analysis.BEST_CONVBENCH: [ratio(v) for v in t[analysis.BEST_CONVBENCH]],
             "by": t["best_algorithm"]}
    text = pd.DataFrame(shown).to_string(index=False)
    return (f"time / {name} per layer (below 1: faster than {name}; -: not run or not "
            f"accurate)\n{text}")


def _compare(args) -> int:
    import pandas as pd

    from . import analysis, compare, store

    if not args.threshold >= 0:
        raise ValueError(f"--threshold: expected a percentage >= 0, got {args.threshold:g}")
    df_a, df_b = store.load_run(args.run_a), store.load_run(args.run_b)
    try:
        diffs = compare.environment_differences(store.read_meta(args.run_a),
                                                store.read_meta(args.run_b))
    except ValueError:  # a run without meta.json (a killed run's journal) still compares
        diffs = []
    for line in diffs:
        print(f"note: the runs differ in {line}", file=sys.stderr)

    cmp = compare.compare(df_a, df_b, threshold=args.threshold / 100)
    changed = cmp[cmp["changed"].astype(bool)]
    slower = int((changed["direction"] == "slower").sum())
    print(f"{len(cmp)} cases ok in both runs; {len(changed)} changed beyond their noise and "
          f"{args.threshold:g}% ({slower} slower, {len(changed) - slower} faster)")
    few = int((cmp["test"] == "ratio").sum())
    if few:
        print(f"note: {few} cases have too few values for the rank test; their ratio alone "
              f"decides")
    if not changed.empty:
        print()
        print(pd.DataFrame({
            "problem": [n or p for n, p in zip(changed["name"], changed["problem"], strict=True)],
            "algorithm": [analysis.label(a, d) for a, d in
                          zip(changed["algorithm"], changed["device"], strict=True)],
            "A ms": (changed["median_a"] * 1e3).round(3),
            "B ms": (changed["median_b"] * 1e3).round(3),
            "ratio B/A": changed["ratio"].round(3),
            "p-value": changed["p_value"].map(lambda p: "-" if pd.isna(p) else f"{p:.3g}"),
        }).to_string(index=False))
    moved = compare.moved_winners(df_a, df_b)
    if not moved.empty:
        print("\nmoved winners:")
        for _, m in moved.iterrows():
            print(f"  {m['name'] or m['problem']}: {m['winner_a']} -> {m['winner_b']}"
                  + (" (within noise)" if m["within_noise"] else ""))
    cross = compare.moved_crossovers(df_a, df_b)
    if not cross.empty:
        print("\nmoved crossovers:")
        for _, c in cross.iterrows():
            print(f"  {c['change']}: " + (f"{c['a']}  ->  now {c['b']}" if c["change"] == "moved"
                                          else c["a"] or c["b"]))
    status = compare.status_changes(df_a, df_b)
    if not status.empty:
        print("\nstatus changes:")
        for _, s in status.iterrows():
            print(f"  {s['name'] or s['problem']} {analysis.label(s['algorithm'], s['device'])}"
                  f": {s['status_a']} -> {s['status_b']}"
                  + (" (inaccurate)" if s["status_b"] == "ok" and not s["accurate_b"] else "")
                  + (f" ({s['reason_b']})" if s["reason_b"] else ""))
    failed = len(changed) > 0 or bool(status["regression"].any())
    return 1 if args.fail and failed else 0


def _tune(args) -> int:
    import numba
    from tqdm import tqdm

    from . import registry, tuning

    threads = args.threads or numba.config.NUMBA_NUM_THREADS
    if args.family:
        known = registry.tunable_families()
        bad = [f for f in args.family if f not in known]
        if bad:
            raise ValueError(f"--family: unknown family {bad[0]!r} (allowed: "
                             f"{', '.join(known)})")
    print(f"tuning on {registry.cpu_target().describe()}, {threads} threads, budget "
          f"{args.budget:g} s", file=sys.stderr)
    bar = None

    def progress(total):
        nonlocal bar
        bar = tqdm(total=total, unit="candidate", file=sys.stderr, disable=None)
        return bar.update

    try:
        result = tuning.tune(threads, args.budget, args.family, progress)
    finally:
        if bar:
            bar.close()
    for family in args.family or registry.tunable_families():
        r = result.results[family]
        print(f"{family}: {r['decision']} (on {len(r['problems'])} problems, "
              f"{len(r['candidates'])} candidates in {r['seconds']:.0f} s"
              + (f", {r['untried']} left untried for the budget" if r["untried"] else "")
              + ")")
    print(result.note)
    return 0


def _choices(args) -> int:
    import numba

    from . import choices

    threads = args.threads or numba.config.NUMBA_NUM_THREADS
    if args.action == "clear":
        print(f"cleared {choices.clear(threads)} choices recorded at {threads} threads")
        return 0
    if args.action in ("export", "import") and not args.file:
        raise ValueError(f"choices {args.action}: FILE is required (a .parquet path)")
    if args.action == "import":
        n, notes = choices.import_(args.file, threads)
        for note in notes:
            print(f"choices: {note}", file=sys.stderr)
        print(f"imported {n} choices at {threads} threads")
        return 0
    entries = choices.table(threads)
    if not entries:
        raise ValueError(f"choices: none recorded on this machine at {threads} threads (run "
                         "convbench run sweep, or conv2d(..., algo='auto'))")
    if args.action == "export":
        print(f"exported {choices.export(args.file, threads)} choices to {args.file}")
        return 0
    print(f"{'problem':<40} {'device':<6} {'winner':<14} {'lead':>6}  {'of':>3}  source")
    for e in entries.values():
        lead = f"{e['lead']:5.2f}x" if e.get("lead") else f"{'-':>6}"
        print(f"{e['problem']:<40} {e['device']:<6} {e['winner']:<14} {lead}"
              f"{' ' if e['decisive'] else '~'} {len(e['times']):>3}  {e['source']}")
    print("~: the lead is within noise")
    return 0


def _model(args) -> int:
    import numba
    import pandas as pd

    from . import choices, model

    threads = args.threads or numba.config.NUMBA_NUM_THREADS
    entries = choices.table(threads)
    if args.action == "fit":
        m = model.fit(entries, args.device)
        print(f"winner model of {m.n_problems} problems recorded on {args.device} at {threads} "
              f"threads ({', '.join(m.algorithms)}), one rule per region where one algorithm "
              "is best:")
        print(m.rules(), end="")
        return 0
    if args.runs:
        from . import store

        rows = pd.concat([store.load_run(r) for r in args.runs], ignore_index=True)
        table = model.held_out(entries, rows, args.device)
        how = (f"fitted on the recorded problems other than the {len(table)} of "
               f"{', '.join(args.runs)}")
    else:
        table = model.regret(entries, args.device)
        how = f"{model.FOLDS}-fold cross-validation over {len(table)} recorded problems"
    s = model.summary(table)
    print(f"regret of the winner model on {args.device} at {threads} threads, {how} "
          "(predicted algorithm's time / best time):")
    print(f"  median {s['median']:.3f}, worst {s['worst']:.3f}, total {s['total']:.3f}; "
          f"top-1 accuracy {s['top1']:.0%}"
          + (f"; {s['untimed']} predictions of algorithms not timed there" if s["untimed"]
             else ""))
    worst = table.dropna(subset=["regret"]).nlargest(5, "regret")
    for _, r in worst[worst["regret"] > 1].iterrows():
        print(f"  {r['problem']:<40} predicted {r['predicted']:<13} best {r['winner']:<13} "
              f"{r['regret']:.2f}x")
    return 0


def _plan(args) -> int:
    from . import plans

    p = plans.plan(args.network, args.device, args.threads)
    if (p.layers["source"] == "predicted").all():
        raise ValueError(f"plan: no layer of {args.network} is recorded on {p.device} at "
                         f"{p.threads} threads (run convbench run sweep --preset "
                         f"{args.network} first)")
    print(f"plan of {p.network} on {p.device} at {p.threads} threads (times from the choice "
          "database, per occurrence):")
    print(f"{'layer':<34} {'x':>2}  {'algorithm':<14} {'ms':>8}  source")
    for _, r in p.layers.iterrows():
        ms = f"{r['expected_s'] * 1e3:8.3f}" if r["expected_s"] == r["expected_s"] else f"{'-':>8}"
        print(f"{r['name'] or r['problem']:<34} {r['count']:>2}  {r['algorithm']:<14} {ms}  "
              f"{r['source']}")
    total = p.total_s
    if total != total:
        print("total: unknown (layers without a recorded time: run a sweep of them)")
        return 0
    print(f"total {total * 1e3:.3f} ms")
    for name, t in sorted(p.totals.items(), key=lambda kv: kv[1]):
        print(f"  {name:<26} {t * 1e3:9.3f} ms  plan / it {total / t:.2f}")
    return 0


def _write_report(runs, out) -> Path:
    """The report of saved runs: a run's own, or the fleet report when their rows ran on
    several machines (default directory ``reports/fleet-<run>+<run>...``)."""
    from . import fleet, report

    if len(runs) == 1 and fleet.machine_count(runs[0]) == 1:
        return report.write_report(runs[0], out)
    names = [Path(r).resolve().name for r in runs]
    out = out or Path(report.DEFAULT_DIR) / ("fleet-" + "+".join(names))[:120]
    return fleet.write_fleet_report(runs, out)


def _print_winners(df) -> None:
    """The winners table; one per machine when the rows ran on several (their times are never
    ranked against each other)."""
    from . import analysis, fleet

    groups = fleet.per_machine(df) if df["machine"].nunique() > 1 else {"": df}
    for machine, rows in groups.items():
        table = analysis.winners_table(rows)
        if not table.empty:
            print()
            if machine:
                print(f"on {machine}:")
            print(table.to_string(index=False))


def _report(args) -> int:
    print(f"report: {_write_report(args.run_dirs, args.out)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="convbench", description="Convolution algorithms, measured.")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("list", help="the registered algorithms and the presets")
    p.add_argument("--device", choices=registry.DEVICES)
    p.set_defaults(func=_list)

    p = sub.add_parser("run", help="run a sweep")
    p.add_argument("what", choices=["sweep"])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", help="a built-in sweep (default: 'default'; see convbench list)")
    src.add_argument("--config", help="a sweep TOML file")
    src.add_argument("--batch", help="a file of benchdnn problem descriptors, one a line")
    src.add_argument("--resume", metavar="RUN_DIR", help="finish an interrupted run")
    p.add_argument("--algo", type=_names, help="algorithms to run, comma-separated")
    p.add_argument("--device", type=_names, help="devices, comma-separated (cpu, cuda)")
    p.add_argument("--dir", type=_names, help="directions of every layer, comma-separated "
                   "(fwd, bwd_d: gradient of the input, bwd_w: of the weights)")
    p.add_argument("--results-dir", default="results")
    p.add_argument("--reports-dir", default="reports")
    p.add_argument("--threads", type=_positive,
                   help="Numba threads for the whole run (BLAS runs single-threaded in them)")
    p.add_argument("--max-memory", type=_size,
                   help="workspace one case may use, e.g. 4G (default: half the free memory)")
    p.add_argument("--remeasure", action="store_true",
                   help="measure the machine's roofline (peak GFLOP/s, bandwidth) again "
                        "instead of reading it from the cache")
    p.add_argument("--retune", action="store_true",
                   help="measure the CPU kernels' parameters again (convbench tune) before "
                        "the run, instead of reading them from the cache")
    p.add_argument("--no-record", action="store_true",
                   help="do not add the run's winners to this machine's choice database")
    p.add_argument("--cluster", metavar="SCHEDULER_ADDRESS",
                   help="run the cases on the Dask cluster of this scheduler (workers: "
                        "convbench worker SCHEDULER_ADDRESS)")
    _tls_options(p)
    p.set_defaults(func=_run)

    p = sub.add_parser("worker", help="a Dask worker that times one case at a time on this "
                                      "machine, for convbench run sweep --cluster")
    p.add_argument("scheduler", metavar="SCHEDULER_ADDRESS", help="e.g. tls://10.0.0.1:8786")
    p.add_argument("--threads", type=_positive,
                   help="Numba threads of every case (default: Numba's)")
    p.add_argument("--host", metavar="ADDRESS",
                   help="the interface the worker listens on (default: the one that "
                        "reaches the scheduler)")
    _tls_options(p)
    p.set_defaults(func=_worker)

    p = sub.add_parser("compile", help="compile the CPU kernels into Numba's cache now, in "
                                       "parallel processes, so that later runs start warm")
    p.add_argument("--algo", type=_names, help="CPU algorithms, comma-separated (default: all)")
    p.add_argument("--dtype", type=_names, help="float32, float64 (default: both)")
    p.add_argument("--dir", type=_names, help="directions, comma-separated (default: all)")
    p.add_argument("--processes", type=_positive,
                   help="compiling processes (default: the usable cores; 1: this process)")
    p.set_defaults(func=_compile)

    p = sub.add_parser("tune", help="measure the CPU kernels' parameters on this machine "
                                    "and cache them for later runs")
    p.add_argument("--budget", type=_seconds, default=120.0,
                   help="seconds to spend in all, compilation included (default 120)")
    p.add_argument("--threads", type=_positive, help="Numba threads (default: Numba's)")
    p.add_argument("--family", type=_names, help="families to tune, comma-separated "
                                                 "(default: every tunable one)")
    p.set_defaults(func=_tune)

    p = sub.add_parser("compare", help="two runs case by case: what changed beyond noise")
    p.add_argument("run_a", metavar="RUN_A", help="the reference run directory")
    p.add_argument("run_b", metavar="RUN_B", help="the run compared with it")
    p.add_argument("--threshold", type=float, default=10.0, metavar="PCT",
                   help="smallest change that counts, in percent (default 10)")
    p.add_argument("--fail", action="store_true",
                   help="exit 1 when a case changed or stopped running ok (for CI)")
    p.set_defaults(func=_compare)

    p = sub.add_parser("choices", help="this machine's choice database (what algo='auto' "
                                       "runs): show, clear, export or import it")
    p.add_argument("action", choices=["show", "clear", "export", "import"])
    p.add_argument("file", nargs="?", metavar="FILE", help="the Parquet file to export or import")
    p.add_argument("--threads", type=_positive, help="Numba threads (default: Numba's)")
    p.set_defaults(func=_choices)

    p = sub.add_parser("model", help="the winner model learned from the choice database: its "
                                     "rules (fit) or its cross-validated regret (report)")
    p.add_argument("action", choices=["fit", "report"])
    p.add_argument("runs", nargs="*", metavar="RUN_DIR",
                   help="report: judge the model on these runs' problems, fitted on the others")
    p.add_argument("--threads", type=_positive, help="Numba threads (default: Numba's)")
    p.add_argument("--device", choices=registry.DEVICES, default="cpu")
    p.set_defaults(func=_model)

    p = sub.add_parser("plan", help="the algorithm algo='auto' picks for each layer of a "
                                    "network, and the network's expected time")
    p.add_argument("network", metavar="NETWORK", help="a preset, a sweep TOML or a batch file")
    p.add_argument("--threads", type=_positive, help="Numba threads (default: Numba's)")
    p.add_argument("--device", choices=registry.DEVICES, default="cpu")
    p.set_defaults(func=_plan)

    p = sub.add_parser("report", help="charts and HTML from saved runs, without running "
                                      "anything; runs of several machines side by side")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="a run directory (results/<run-id>); several, or a run of several "
                        "machines, give the fleet report")
    p.add_argument("--out", metavar="DIR",
                   help="where report.html and its charts go (default: reports/<run-id>)")
    p.set_defaults(func=_report)
    return ap


def _load_plugins() -> None:
    """Read the installed plugins now, and say in one line each which were left out."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", plugins.PluginWarning)
        registry.algorithms()
    for text in plugins.problems():
        print(f"warning: {text}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _load_plugins()
    try:
        return args.func(args)
    except ValueError as err:
        print(f"convbench: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
