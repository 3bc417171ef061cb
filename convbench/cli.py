"""The ``convbench`` command line.

Bad input exits with status 2 and one line naming the problem, never a traceback, and
writes no result files.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

from . import registry, sweep


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


def _names(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _list(args) -> int:
    rows = [(a.name, a.device, a.family, a.doc) for a in registry.algorithms(args.device)]
    width = max(len(r[0]) for r in rows)
    print(f"{'algorithm':<{width}}  device  family     what it computes")
    for name, device, family, doc in rows:
        print(f"{name:<{width}}  {device:<6}  {family:<9}  {doc}")
    print()
    print("presets (convbench run sweep --preset NAME):")
    for name in sweep.preset_names():
        cfg = sweep.preset(name)
        print(f"  {name:<10} {len(cfg.problems):>4} problems  {cfg.description}")
    return 0


def _config(args) -> sweep.SweepConfig:
    if args.config:
        cfg = sweep.load_config(args.config)
    elif args.batch:
        cfg = sweep.load_batch(args.batch)
    else:
        cfg = sweep.preset(args.preset or "default")
    if args.algo:
        known = {a.name for a in registry.algorithms()}
        bad = [a for a in args.algo if a not in known]
        if bad:
            raise ValueError(f"--algo: unknown algorithm {bad[0]!r} (allowed: "
                             f"{', '.join(sorted(known))})")
        cfg = dataclasses.replace(cfg, algorithms=args.algo)
    if args.device:
        bad = [d for d in args.device if d not in registry.DEVICES]
        if bad:
            raise ValueError(f"--device: unknown device {bad[0]!r} (allowed: "
                             f"{', '.join(registry.DEVICES)})")
        cfg = dataclasses.replace(cfg, devices=args.device)
    return cfg


def _run(args) -> int:
    from tqdm import tqdm

    from . import analysis, runner, store

    if args.resume:
        store.read_meta(args.resume)  # a clear error before anything is touched
        cfg = None
    else:
        cfg = _config(args)
    bar = None

    def on_start(run_dir: Path, todo: int):
        nonlocal bar
        meta = store.read_meta(run_dir)
        warning = meta["machine"].get("blas_warning")
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        print(f"run {run_dir} ({todo} cases, {meta['threads']} threads)", file=sys.stderr)
        bar = tqdm(total=todo, unit="case", dynamic_ncols=True, file=sys.stderr, disable=None)

    def progress(row: dict):
        bar.set_postfix_str(f"{row['problem']} {row['algorithm']}: {row['status']}")
        bar.update()

    try:
        df = runner.run_sweep(cfg, results_dir=args.results_dir, resume=args.resume,
                              threads=args.threads, max_memory=args.max_memory,
                              progress=progress, on_start=on_start)
    except runner.SweepInterrupted as stop:
        if bar:
            bar.close()
        print(f"\ninterrupted; rows so far are saved. Resume with: convbench run sweep "
              f"--resume {stop.run_dir}", file=sys.stderr)
        return 130
    finally:
        if bar:
            bar.close()
    run_dir = Path(df.attrs["run_dir"])
    counts = df["status"].value_counts().to_dict()
    print(f"results: {run_dir}  ({', '.join(f'{v} {k}' for k, v in counts.items())})")
    print(f"report:  {Path(args.reports_dir) / run_dir.name} (written by `convbench report "
          f"{run_dir}` once reports exist)")
    table = analysis.winners_table(df)
    if not table.empty:
        print()
        print(table.to_string(index=False))
    errors = df[df["status"] == "error"]
    for _, row in errors.iterrows():
        print(f"error: {row['problem']} {row['algorithm']}: {row['reason']}", file=sys.stderr)
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
    p.add_argument("--results-dir", default="results")
    p.add_argument("--reports-dir", default="reports")
    p.add_argument("--threads", type=_positive,
                   help="Numba threads for the whole run (BLAS runs single-threaded in them)")
    p.add_argument("--max-memory", type=_size,
                   help="workspace one case may use, e.g. 4G (default: half the free memory)")
    p.set_defaults(func=_run)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:
        print(f"convbench: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
