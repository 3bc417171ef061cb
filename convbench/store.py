"""A run on disk: ``results/<run-id>/`` with a journal, the rows as Parquet, and ``meta.json``.

- ``journal.jsonl``: one JSON row a line, appended, flushed and fsynced after every row, so a
  sweep killed at any moment loses at most the row in flight.  A torn last line is ignored.
- ``rows.parquet``: every row, written when the run ends (or is interrupted), atomically.
- ``meta.json``: the sweep config, the machine fingerprint, threads, start and end, written
  atomically at the start and again at the end.

``schema_version`` is in ``meta.json`` and in every row.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

import pandas as pd

try:
    import fcntl
except ImportError:  # not on Windows: journals are not locked there
    fcntl = None

# 2: the roofline columns (bytes_moved, intensity, peak_fraction, bandwidth_fraction,
# memory_level) and ``roofline`` in meta.json.  3: ``params`` (the kernel parameters a row ran)
# and ``tuning`` in meta.json.  4: ``machine`` (the machine a row ran on,
# `convbench.cache.machine_id`) and ``machines`` in meta.json; ``direction`` (fwd, bwd_d,
# bwd_w); ``launch_floor_s`` (CUDA rows).  Older runs load with the newer columns missing, but
# for those with a value every older row had (`OLD_VALUES`).
SCHEMA_VERSION = 4
JOURNAL = "journal.jsonl"
ROWS = "rows.parquet"
META = "meta.json"
# A row is identified by its problem (id and layer name) and its algorithm on a device.
KEY = ("problem", "name", "algorithm", "device")

_INT, _FLOAT, _STR, _BOOL = "Int64", "float64", "string", "boolean"
# Every row's columns and their types, in order; a row that lacks a column (an unsupported
# row has no timing) gets a missing value of the column's type.
COLUMNS = {
    "run_id": _STR, "machine": _STR, "problem": _STR, "name": _STR, "count": _INT,
    **dict.fromkeys(("n", "c", "h", "w", "k", "r", "s"), _INT),
    **dict.fromkeys(("stride", "padding", "dilation"), _STR), "groups": _INT, "dtype": _STR,
    "direction": _STR,
    **dict.fromkeys(("sh", "sw", "dh", "dw", "pt", "pb", "pl", "pr", "oh", "ow"), _INT),
    **dict.fromkeys(("flops", "params", "min_bytes"), _INT),
    **dict.fromkeys(("algorithm", "family", "device", "operator", "status", "reason"), _STR),
    "threads": _INT, "tolerance": _FLOAT, "accurate": _BOOL,
    **dict.fromkeys(("max_abs_err", "max_rel_err", "rel_l2_err"), _FLOAT),
    **dict.fromkeys(("compile_s", "prepare_s", "median_s", "min_s", "q1_s", "q3_s", "std_s"),
                    _FLOAT),
    "n_values": _INT, "loops": _INT, "values_s": "object", "gflops": _FLOAT,
    "workspace_bytes": _INT, "phases_s": _STR, "params": _STR, "simulated": _BOOL,
    "h2d_s": _FLOAT, "d2h_s": _FLOAT, "launch_floor_s": _FLOAT, "warnings": _STR,
    # The row under the machine's roofline (convbench.roofline.row_columns; since version 2).
    "bytes_moved": _INT, "intensity": _FLOAT, "peak_fraction": _FLOAT,
    "bandwidth_fraction": _FLOAT, "memory_level": _STR,
    "schema_version": _INT,
}


# What a column added later held in every row written before it existed.
OLD_VALUES = {"direction": "fwd"}


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_meta(run_dir: Path, meta: dict) -> None:
    meta = {"schema_version": SCHEMA_VERSION, **meta}
    _atomic_write(Path(run_dir) / META, json.dumps(meta, indent=2, default=str).encode())


def read_meta(run_dir: Path) -> dict:
    path = Path(run_dir) / META
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"run: {run_dir} is not a convbench run (no {META})") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"run: {path} is not valid JSON ({err})") from None


def machine_record(fingerprint: dict, roof: dict | None, threads: int | None) -> dict:
    """What ``meta["machines"]`` says of each machine a run's rows ran on (a local run lists
    its one machine, a cluster run every worker's): its fingerprint, roofline and threads."""
    return {"fingerprint": fingerprint, "roofline": roof, "threads": threads}


def machines(meta: dict) -> dict[str, dict]:
    """The machines of a run by id (`machine_record`); a run older than ``machines`` has one,
    named by its host."""
    if meta.get("machines"):
        return dict(meta["machines"])
    fingerprint = meta.get("machine") or {}
    return {str(fingerprint.get("hostname") or "unknown"):
            machine_record(fingerprint, meta.get("roofline"), meta.get("threads"))}


class Journal:
    """Append-only row log of one run, held by one process at a time.

    Two processes appending to one journal (a run resumed while it is still running) would
    each journal the rows the other lacks: the journal takes an exclusive lock, which the
    operating system releases when its process ends, however it ends.

    Raises
    ------
    ValueError
        When another process holds the run's journal.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / JOURNAL
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        try:
            if fcntl is not None:
                fcntl.flock(self._f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._f.close()
            raise ValueError(f"run: {run_dir} is being written by another process (a run "
                             "still going): wait for it, or stop it first") from None

    def append(self, row: dict) -> None:
        self._f.write(json.dumps({"schema_version": SCHEMA_VERSION, **row}, default=_json) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def _json(v):
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    if hasattr(v, "tolist"):
        return v.tolist()
    raise TypeError(f"not JSON serializable: {type(v).__name__}")


def read_journal(run_dir: Path) -> list[dict]:
    """The journal's rows; a torn final line (a kill mid-write) is dropped."""
    path = Path(run_dir) / JOURNAL
    if not path.exists():
        return []
    rows = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break  # the row in flight when the run was killed
            raise ValueError(f"run: {path}:{i + 1} is corrupt") from None
    return rows


def rows_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows as a DataFrame with the typed `COLUMNS`, one per key (the last row of a key wins)."""
    df = pd.DataFrame(rows)
    for col, dtype in COLUMNS.items():
        if col not in df:
            df[col] = OLD_VALUES.get(col)
        df[col] = df[col].astype(dtype)
    df = df[list(COLUMNS) + [c for c in df.columns if c not in COLUMNS]]
    return df.drop_duplicates(subset=list(KEY), keep="last").reset_index(drop=True)


def write_rows(run_dir: Path, df: pd.DataFrame) -> Path:
    """Parquet, atomically (write to a temporary name, then rename)."""
    path = Path(run_dir) / ROWS
    tmp = path.with_name(path.name + ".tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


def load_run(path) -> pd.DataFrame:
    """The rows of a run: a run directory (or its Parquet file).

    Reads the journal when it holds rows the Parquet file lacks (a killed run), so nothing
    that was measured is lost.
    """
    path = Path(path)
    run_dir = path.parent if path.suffix == ".parquet" else path
    if not run_dir.is_dir():
        raise ValueError(f"run: {path} does not exist")
    journal = read_journal(run_dir)
    parquet = run_dir / ROWS
    if parquet.exists():
        df = pd.read_parquet(parquet)
        if len(df) >= len(rows_frame(journal)):
            # a run of an older schema lacks the newer columns: missing values, typed
            missing = {c: pd.Series(OLD_VALUES.get(c), index=df.index, dtype=object).astype(t)
                       for c, t in COLUMNS.items() if c not in df}
            return df.assign(**missing) if missing else df
    if not journal:
        raise ValueError(f"run: {run_dir} holds no rows ({JOURNAL} and {ROWS} missing or empty)")
    return rows_frame(journal)
