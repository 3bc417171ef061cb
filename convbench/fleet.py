"""The fleet report: runs of several machines side by side.  Runs nothing.

A cluster run holds rows of several machines, and runs made separately on different machines
can be read together (each row names its machine, `convbench.cache.machine_id`).  Times of
different machines are never ranked against each other: every analysis is made per machine
(`convbench.analysis.winners`, `convbench.analysis.crossovers`) and only its answers are set
side by side: each machine's winner map and roofline, the winner of every problem on every
machine, and the crossovers that move from the first machine to another
(`convbench.compare.moved_crossovers`, as ``convbench compare`` finds them between two runs).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import jinja2
import pandas as pd
from matplotlib.colors import to_hex

from . import analysis, compare, plots, report, store

TEMPLATE = "fleet.html.j2"


def load(run_dirs) -> tuple[pd.DataFrame, dict[str, dict]]:
    """The rows of every run, each naming its machine, and every machine's record
    (`convbench.store.machines`), in the order the runs first name them.  A case measured
    twice on one machine keeps its later run's row."""
    frames, records = [], {}
    for run_dir in map(Path, run_dirs):
        meta = store.read_meta(run_dir)
        df = store.load_run(run_dir)
        mine = store.machines(meta)
        if df["machine"].isna().all():  # a run older than the machine column: its one host
            df = df.assign(machine=pd.array([next(iter(mine))] * len(df), dtype="string"))
        records.update(mine)
        frames.append(df)
    rows = pd.concat(frames, ignore_index=True)
    rows = rows.drop_duplicates(subset=[*store.KEY, "machine"], keep="last")
    order = list(dict.fromkeys(rows["machine"]))
    return rows.reset_index(drop=True), {m: records.get(m, {}) for m in order}


def per_machine(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Each machine's rows, in the order the machines first appear."""
    return {m: df[df["machine"] == m] for m in dict.fromkeys(df["machine"])}


def side_by_side(df: pd.DataFrame) -> pd.DataFrame:
    """One row per problem: ``problem, name`` and, per machine, its winner (``winner:<id>``)
    and median time (``median_s:<id>``); a problem no machine timed accurately is left out."""
    out = None
    for m, rows in per_machine(df).items():
        win = analysis.winners(rows)[["problem", "name", "winner", "median_s"]]
        win = win.rename(columns={"winner": f"winner:{m}", "median_s": f"median_s:{m}"})
        out = win if out is None else out.merge(win, on=["problem", "name"], how="outer")
    order = {p: i for i, p in enumerate(dict.fromkeys(df["problem"]))}
    return out.sort_values("problem", key=lambda s: s.map(order)).reset_index(drop=True)


def moved_crossovers(df: pd.DataFrame) -> pd.DataFrame:
    """The crossovers that differ between the first machine and each other one:
    `convbench.compare.moved_crossovers` with a ``machine`` column (the other machine)."""
    groups = list(per_machine(df).items())
    first = groups[0][1]
    frames = [compare.moved_crossovers(first, rows).assign(machine=m) for m, rows in groups[1:]]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=[*compare.MOVED_CROSSOVER_COLUMNS, "machine"])
    return pd.concat(frames, ignore_index=True)


def _slug(machine: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", machine)


def _machine_section(machine: str, rows: pd.DataFrame, record: dict, out: Path) -> dict:
    """One machine's part of the page: its CPU, its findings, winner map and roofline."""
    fingerprint = record.get("fingerprint") or {}
    win = analysis.winners(rows)
    xo = analysis.crossovers(rows)
    changed = xo[xo["winner_changed"].fillna(False).astype(bool)] if not xo.empty else xo
    charts = []
    path = plots.winner_map(rows, out / f"winner_map-{_slug(machine)}.png")
    if path:
        charts.append((path, f"Winner map on {machine}: the fastest accurate algorithm per "
                             "filter size and stride, and its lead over the runner-up."))
    if record.get("roofline"):
        path = plots.roofline(rows, out / f"roofline-{_slug(machine)}.png", record["roofline"])
        if path:
            charts.append((path, f"Each row of {machine} under its own roofline."))
    return {
        "id": machine,
        "cpu": " ".join(str(x) for x in (fingerprint.get("cpu_model"),
                                         fingerprint.get("cores") and
                                         f"({fingerprint['cores']} cores)") if x),
        "threads": record.get("threads") or "",
        "rows": len(rows),
        "winners": report.winner_sentence(win) if not win.empty else
        "No algorithm produced an accurate, timed result on this machine.",
        "crossovers": [s + "." for s in changed["sentence"]] if not changed.empty else [],
        "charts": [{"data": report.data_uri(p), "file": Path(p).name, "caption": c}
                   for p, c in charts],
    }


def context(df: pd.DataFrame, machines: dict[str, dict], out: Path, runs=()) -> dict:
    """Everything the template needs, as plain strings, lists and dicts."""
    palette = {name: to_hex(c) for name, c in plots.colors(df["algorithm"].dropna()).items()}
    table = side_by_side(df)
    ids = list(machines)
    shape = report.shapes(df)
    rows = []
    for _, r in table.iterrows():
        cells = [{"winner": r[f"winner:{m}"] if isinstance(r[f"winner:{m}"], str) else "",
                  "algo": analysis.algorithm_of(r[f"winner:{m}"])
                  if isinstance(r[f"winner:{m}"], str) else "",
                  "ms": report.ms(r[f"median_s:{m}"])} for m in ids]
        names = {c["winner"] for c in cells if c["winner"]}
        rows.append({"problem": report.problem_name(r), "shape": shape.get(r["problem"], ""),
                     "cells": cells, "differs": len(names) > 1})
    moved = moved_crossovers(df)
    return {
        "title": f"{len(ids)} machine{'s' if len(ids) != 1 else ''}",
        "runs": [str(r) for r in runs],
        "colours": palette,
        "machines": [_machine_section(m, rows_m, machines.get(m, {}), out)
                     for m, rows_m in per_machine(df).items()],
        "ids": ids,
        "table": rows,
        "n_differ": sum(r["differs"] for r in rows),
        "moved": [{"machine": m["machine"], "algorithms": m["algorithms"],
                   "change": {"only in A": f"only on {ids[0]}",
                              "only in B": f"only on {m['machine']}"}.get(m["change"],
                                                                          m["change"]),
                   "first": m["a"], "other": m["b"]}
                  for _, m in moved.iterrows()],
    }


def write_fleet_report(run_dirs, out_dir) -> Path:
    """Write ``report.html`` and its charts for ``run_dirs`` into ``out_dir``; return its path.

    Raises
    ------
    ValueError
        When a directory is not a convbench run.
    """
    df, machines = load(run_dirs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = jinja2.Environment(loader=jinja2.PackageLoader("convbench", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    html = env.get_template(TEMPLATE).render(**context(df, machines, out, run_dirs))
    path = out / report.REPORT
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, path)
    return path


def machine_count(run_dir) -> int:
    """How many machines a run's rows ran on (its ``meta.json`` lists them)."""
    return len(store.machines(store.read_meta(run_dir)))
