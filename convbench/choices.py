"""The choice database: which algorithm won each problem on this machine, kept between runs.

For each (problem, dtype, device, threads) the database keeps the measured times of every
accurate algorithm (median and quartiles), the winner, its lead over the runner-up and whether
that lead is beyond noise (`convbench.analysis.tied`), and the times of the baselines (other
libraries' convolutions, never chosen: what a plan is compared against).  One JSON file per
machine key in the cache directory (`convbench.cache`: the roofline's and the tuning's key, so
a different CPU, ISA, thread count, BLAS, Numba or convbench version never reuses entries),
read and rewritten under an exclusive file lock and replaced atomically: concurrent writers
never lose each other's entries, a reader never sees half a file, and a corrupt file is ignored
with a warning and rebuilt by the next write.

Entries come from completed sweeps (`record_rows`) and from ``conv2d(..., algo="auto")``
measuring a problem it has not seen (`choose`).  A new measurement replaces an algorithm's
times; the winner changes only when the new one leads beyond noise, otherwise the recorded
winner stays and the merge says so: two measurements within noise never flip a choice
silently.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numba
import pandas as pd

from . import analysis, cache, registry
from .spec import ConvSpec

FORMAT = 1
KIND = "choices"
MODES = ("measure", "predict", "db-only")
DEFAULT_MODE = "measure"
DEFAULT_BUDGET = 1.0  # seconds of timing per problem measured by ``algo="auto"``
_TIMES = ("median_s", "q1_s", "q3_s")


class ChoicesWarning(UserWarning):
    """A database file that could not be used (corrupt, foreign, or of another key)."""


@dataclass(frozen=True)
class Choice:
    """What ``algo="auto"`` ran on a problem, and why."""

    algorithm: str
    problem: str
    device: str
    threads: int
    source: str  # "database", "measured" or "predicted"; for stages, each stage's
    why: str
    stages: tuple[Choice, ...] = ()  # a separable convolution's depthwise and pointwise


def chose_stages(*stages: Choice) -> Choice:
    """Record one choice made of the choices of a computation's stages (a separable
    convolution's depthwise and pointwise convolutions), as `last_choice` will give it."""
    choice = Choice("+".join(c.algorithm for c in stages), " then ".join(c.problem for c in stages),
                    stages[0].device, stages[0].threads, "+".join(c.source for c in stages),
                    "; ".join(f"{c.algorithm} for {c.problem}: {c.why}" for c in stages), stages)
    _LAST[0] = choice
    return choice


_LAST: list[Choice | None] = [None]
_TABLES: dict[int, dict] = {}  # threads -> entries, as last read or written by this process
_HITS: dict[tuple, Choice] = {}  # (spec, device, threads) -> its choice from the database
_MODELS: dict[tuple, tuple] = {}  # (threads, device) -> (the table it was fitted on, model)
_SAID: set[str] = set()


def last_choice() -> Choice | None:
    """The choice behind the last ``algo="auto"`` call of this process (None before one)."""
    return _LAST[0]


def entry_key(problem: str, device: str, threads: int) -> str:
    return f"{problem}|{device}|{int(threads)}"


def _file(threads: int) -> tuple[Path, dict]:
    key = cache.machine_key(threads)
    return cache.path(KIND, key), key


@contextlib.contextmanager
def _locked(file: Path):
    """An exclusive lock on ``file``'s lock file, for a read-modify-write."""
    file.parent.mkdir(parents=True, exist_ok=True)
    with open(file.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _say_once(text: str) -> None:
    if text not in _SAID:
        _SAID.add(text)
        warnings.warn(text, ChoicesWarning, stacklevel=3)


def _read(threads: int, lookup: bool = True) -> dict:
    """This key's entries from disk (empty when there are none, with a warning once when the
    file is corrupt, or, for a ``lookup``, when only other keys' files exist)."""
    file, key = _file(threads)
    data, why = cache.read(file, key, FORMAT)
    if data is None:
        if why != "missing":
            _say_once(f"choices: {why}; it will be rebuilt")
        elif lookup and any(p != file for p in file.parent.glob(f"{KIND}-*.json")):
            _say_once("choices: none recorded for this machine key (CPU, ISA, threads, BLAS, "
                      "Numba and convbench versions); the entries of other keys are not used")
        return {}
    return data.get("entries", {})


def table(threads: int) -> dict:
    """The entries of this machine at ``threads`` (read from disk once per process)."""
    if threads not in _TABLES:
        _TABLES[threads] = _read(threads)
    return _TABLES[threads]


def _decide(times: dict, old_winner: str | None) -> tuple[str, float, bool, str]:
    """``(winner, lead, decisive, note)`` from per-algorithm times: the fastest wins unless
    ``old_winner`` is tied with it (then the old winner stays, and ``note`` says so)."""
    order = sorted(times, key=lambda a: (times[a]["median_s"], a))
    best = order[0]
    note = ""
    if old_winner in times and old_winner != best:
        if analysis.tied(times[best], times[old_winner]):
            note = (f"kept {old_winner}: {best} is faster by "
                    f"{times[old_winner]['median_s'] / times[best]['median_s'] - 1:.1%}, "
                    "within noise")
            order.remove(old_winner)
            order.insert(0, old_winner)
            best = old_winner
        else:
            note = f"winner changed from {old_winner} to {best}"
    if len(order) < 2:
        return best, math.nan, False, note
    second = order[1]
    lead = times[second]["median_s"] / times[best]["median_s"]
    return best, lead, not analysis.tied(times[best], times[second]), note


def merge(old: dict | None, fresh: dict) -> tuple[dict, str]:
    """``old`` (an entry, or None) updated with ``fresh``'s per-algorithm times; and a note
    when the winner changed or was kept within noise."""
    times = {**(old or {}).get("times", {}), **fresh["times"]}
    winner, lead, decisive, note = _decide(times, (old or {}).get("winner"))
    baselines = {**(old or {}).get("baselines", {}), **fresh.get("baselines", {})}
    entry = {**fresh, "times": times, "baselines": baselines, "winner": winner,
             "lead": None if math.isnan(lead) else lead, "decisive": decisive}
    return entry, note


def _write(threads: int, fresh: list[dict]) -> list[str]:
    """Merge ``fresh`` entries into this key's file under the lock; the merge notes."""
    file, key = _file(threads)
    notes = []
    with _locked(file):
        entries = _read(threads, lookup=False)
        for f in fresh:
            k = entry_key(f["problem"], f["device"], threads)
            entries[k], note = merge(entries.get(k), f)
            if note:
                notes.append(f"{f['problem']} on {f['device']}: {note}")
        cache.write(file, {"format": FORMAT, "key": key, "entries": entries})
    _TABLES[threads] = entries
    _HITS.clear()
    return notes


def _fresh_entries(rows: pd.DataFrame, source: str) -> dict[int, list[dict]]:
    """Entries (by thread count) of the rows that may win (`analysis.ranked`: ok, accurate,
    timed, not simulated, not baselines)."""
    ranked = analysis.ranked(rows)
    timed = analysis.counted(rows)
    base = timed[analysis.baselines(timed)]
    out: dict[int, list[dict]] = {}
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    for (problem, device, threads), g in ranked.groupby(["problem", "device", "threads"],
                                                       sort=False):
        b = base[(base["problem"] == problem) & (base["device"] == device)
                 & (base["threads"] == threads)]
        out.setdefault(int(threads), []).append(
            {"problem": problem, "dtype": str(g["dtype"].iloc[0]), "device": device,
             "times": _times(g), "baselines": _times(b), "source": source, "recorded": now})
    return out


def _times(g: pd.DataFrame) -> dict:
    """Per algorithm of rows ``g``, its median and quartiles (the last row of each)."""
    return {a: {t: float(r[t]) for t in _TIMES} for a, r in
            g.drop_duplicates("algorithm", keep="last").set_index("algorithm").iterrows()}


def entries_of_rows(rows: pd.DataFrame) -> dict:
    """A choice table of ``rows`` alone (no database): what a report fits its model on."""
    return {entry_key(f["problem"], f["device"], threads): merge(None, f)[0]
            for threads, fresh in _fresh_entries(rows, "sweep").items() for f in fresh}


def record_rows(rows: pd.DataFrame, source: str = "sweep") -> list[str]:
    """Add a run's rows to the database; the notes of winners changed or kept."""
    notes = []
    for threads, fresh in _fresh_entries(rows, source).items():
        notes += _write(threads, fresh)
    return notes


def clear(threads: int) -> int:
    """Remove this key's entries; how many there were."""
    file, _ = _file(threads)
    with _locked(file):
        n = len(_read(threads, lookup=False))
        file.unlink(missing_ok=True)
    _TABLES[threads] = {}
    _HITS.clear()
    return n


# ---------------------------------------------------------------------------------------------
# algo="auto"

def _mode(mode: str | None) -> str:
    mode = mode or os.environ.get("CONVBENCH_AUTO") or DEFAULT_MODE
    if mode not in MODES:
        raise ValueError(f"CONVBENCH_AUTO: unknown mode {mode!r} (allowed: {', '.join(MODES)})")
    return mode


def _budget() -> float:
    text = os.environ.get("CONVBENCH_AUTO_BUDGET")
    try:
        value = float(text) if text else DEFAULT_BUDGET
    except ValueError:
        value = math.nan
    if not value > 0:
        raise ValueError(f"CONVBENCH_AUTO_BUDGET: expected a positive number of seconds, "
                         f"got {text!r}")
    return value


def _measure(spec: ConvSpec, device: str, budget: float) -> pd.DataFrame:
    """One row per supporting algorithm of ``device``, as a sweep times and checks them, in
    about ``budget`` seconds of timing (compilation and the reference come on top)."""
    from . import runner, sweep

    algos = [a for a in registry.algorithms(device)
             if a.default and a.operator == "conv" and a.family != analysis.BASELINE
             and a.supports(spec) is None]
    share = budget / max(len(algos), 1)
    timing = sweep.TimingConfig(min_time=share / 8, values=5, max_seconds=share, warmups=1)
    return pd.DataFrame(runner.time_problem(spec, algos, timing))


def winner_model(threads: int, device: str):
    """The winner model (`convbench.model`) of this key's entries, refitted when they change."""
    from . import model

    entries = table(threads)
    cached = _MODELS.get((threads, device))
    if cached is None or cached[0] is not entries:
        cached = (entries, model.fit(entries, device))
        _MODELS[(threads, device)] = cached
    return cached[1]


def choose(spec: ConvSpec, device: str = "cpu", mode: str | None = None) -> Choice:
    """The algorithm for ``spec`` on ``device`` at this process's thread count: the recorded
    winner, else (``mode``, default ``$CONVBENCH_AUTO`` or ``measure``) measured now and
    recorded (``measure``), predicted by the winner model without measuring (``predict``;
    not recorded: it is no measurement), or an error (``db-only``).

    A hit costs a dictionary lookup: the choices already made are kept by (spec, device,
    threads), so that ``algo="auto"`` adds microseconds to a call, not the key's formatting.
    """
    threads = numba.get_num_threads()
    hit = _HITS.get((spec, device, threads))
    if hit is not None:
        _LAST[0] = hit
        return hit
    k = entry_key(spec.id, device, threads)
    entry = table(threads).get(k)
    if entry is None:  # another process may have recorded it since this one read the file
        fresh = _read(threads)
        if fresh != _TABLES[threads]:  # unchanged: keep the table, and the model fitted on it
            _TABLES[threads] = fresh
        entry = _TABLES[threads].get(k)
    if entry is not None:
        lead = (f", {entry['lead']:.2f}x ahead of the runner-up"
                f"{'' if entry['decisive'] else ' (within noise)'}" if entry.get("lead") else "")
        choice = Choice(entry["winner"], spec.id, device, threads, "database",
                        f"recorded from a {entry['source']} run{lead}")
        _HITS[(spec, device, threads)] = choice
    elif (mode := _mode(mode)) == "predict":
        model = winner_model(threads, device)
        choice = Choice(model.predict(spec), spec.id, device, threads, "predicted",
                        f"predicted by the winner model fitted on {model.n_problems} recorded "
                        "problems (convbench model report states its regret)")
        _HITS[(spec, device, threads)] = choice
    elif mode == "db-only":
        raise ValueError(f"algo='auto': no recorded choice for {spec.id} on {device} at "
                         f"{threads} threads, and CONVBENCH_AUTO is db-only (run a sweep of "
                         "it, or use mode 'measure')")
    else:
        rows = _measure(spec, device, _budget())
        if analysis.ranked(rows).empty:
            why = ("its times come from the CUDA simulator and say nothing about a GPU"
                   if analysis.simulated(rows).any() else "no algorithm computed it accurately")
            raise ValueError(f"algo='auto': {spec.id} on {device} cannot be chosen by "
                             f"measuring: {why}")
        _write(threads, _fresh_entries(rows, "measure")[threads])
        entry = table(threads)[k]
        choice = Choice(entry["winner"], spec.id, device, threads, "measured",
                        f"measured {len(entry['times'])} accurate algorithms now")
    _LAST[0] = choice
    return choice


# ---------------------------------------------------------------------------------------------
# Export and import (Parquet)

def export(file, threads: int) -> int:
    """Write this key's entries to a Parquet file (one row per entry and algorithm, the machine
    key in every row); how many entries."""
    _, key = _file(threads)
    entries = table(threads)
    rows = [{"key": json.dumps(key, sort_keys=True), "problem": e["problem"],
             "dtype": e["dtype"], "device": e["device"], "threads": threads,
             "source": e["source"], "recorded": e["recorded"], "algorithm": a,
             "baseline": field == "baselines", **t}
            for e in entries.values() for field in ("times", "baselines")
            for a, t in e.get(field, {}).items()]
    pd.DataFrame(rows).to_parquet(file, index=False)
    return len(entries)


def import_(file, threads: int) -> tuple[int, list[str]]:
    """Merge a Parquet file written by `export` under this machine key; (entries, notes)."""
    try:
        df = pd.read_parquet(file)
    except (OSError, ValueError) as err:
        raise ValueError(f"{file}: not a choices export ({type(err).__name__})") from None
    missing = {"key", "problem", "dtype", "device", "algorithm", *_TIMES} - set(df.columns)
    if missing:
        raise ValueError(f"{file}: not a choices export (no column {sorted(missing)[0]!r})")
    _, key = _file(threads)
    if set(df["key"]) != {json.dumps(key, sort_keys=True)}:
        raise ValueError(f"{file} was exported under another machine key (CPU, ISA, threads, "
                         "BLAS, Numba or convbench version) than this one's; not imported")
    base = df["baseline"].astype(bool) if "baseline" in df else pd.Series(False, df.index)
    fresh = [{"problem": p, "dtype": g["dtype"].iloc[0], "device": d,
              "times": _times(g[~base[g.index]]), "baselines": _times(g[base[g.index]]),
              "source": "import", "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
             for (p, d), g in df.groupby(["problem", "device"], sort=False)]
    return len(fresh), _write(threads, fresh)
