"""A layer plan for a network: the algorithm ``algo="auto"`` picks for each layer, and what the
network then costs against the best single algorithm and against the baselines.

Expected times are the choice database's (`convbench.choices`), each layer counted as often as
it occurs in the network (``count``).  A layer never measured gets the winner model's choice
(`convbench.model`) and no expected time, and the plan says so: it measures nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import pandas as pd

from . import choices, runner


@dataclass
class Plan:
    """``layers``: one row per layer (``name, problem, count, algorithm, source, expected_s``,
    the time of one occurrence); ``totals``: per algorithm that computes every layer, and per
    baseline timed on every layer, the network's time (occurrences counted)."""

    network: str
    device: str
    threads: int
    layers: pd.DataFrame
    totals: dict

    @property
    def total_s(self) -> float:
        """The plan's time for the network (NaN when a layer has no recorded time)."""
        return float((self.layers["expected_s"] * self.layers["count"]).sum(min_count=1)
                     if self.layers["expected_s"].notna().all() else math.nan)


def _layer(spec, entry: dict | None, threads: int, device: str) -> dict:
    row = {"name": spec.name, "problem": spec.id, "count": spec.count}
    if entry is None:
        try:
            algo = choices.winner_model(threads, device).predict(spec)
        except ValueError:
            algo = ""
        return {**row, "algorithm": algo, "source": "predicted", "expected_s": math.nan}
    return {**row, "algorithm": entry["winner"], "source": entry["source"],
            "expected_s": entry["times"][entry["winner"]]["median_s"]}


def _totals(specs, entries: list[dict | None], field: str) -> dict:
    """Per algorithm (``times``) or baseline (``baselines``) timed on every layer, the
    network's time."""
    if any(e is None for e in entries):
        return {}
    names = set.intersection(*(set(e.get(field, {})) for e in entries))
    return {a: sum(s.count * e[field][a]["median_s"] for s, e in zip(specs, entries,
                                                                     strict=True))
            for a in sorted(names)}


def plan(network, device: str = "cpu", threads: int | None = None) -> Plan:
    """The plan of ``network`` (a preset name, a sweep TOML or a batch file) on ``device`` at
    ``threads`` (default: this process's Numba threads)."""
    config = runner.resolve_config(network)
    threads = threads or numba.get_num_threads()
    table = choices.table(threads)
    specs = list(config.problems)
    entries = [table.get(choices.entry_key(s.id, device, threads)) for s in specs]
    layers = pd.DataFrame([_layer(s, e, threads, device)
                           for s, e in zip(specs, entries, strict=True)])
    totals = {**_totals(specs, entries, "times"),
              **{f"{b} (baseline)": t for b, t in _totals(specs, entries, "baselines").items()}}
    return Plan(config.name, device, threads, layers, totals)
