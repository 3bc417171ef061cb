"""Sweeps as data: TOML files, built-in presets of the same form, and benchdnn batch files.

A sweep names its problems, the algorithms and devices to run them on, and how to time them.
Its TOML form (docs/sweeps.md says more)::

    name = "filters"                  # default: the file's stem
    algorithms = ["direct", "fft"]    # default: every registered one but opt-in baselines
    devices = ["cpu"]                 # default: ["cpu"]; allowed: cpu, cuda
    [timing]                          # min_time, values, max_seconds, warmups (TimingConfig)
    [grid]                            # lists; their cartesian product
    n = [1]                           # default [1]
    c = [32]                          # required
    h = [64]                          # required; w defaults to each problem's h
    k = [32]                          # required
    filter = [1, 3, 5]                # sets r = s; or r (and s, default r) lists
    stride = [1, 2]                   # default [1]; an entry may be a pair [sh, sw]
    padding = ["same"]                # default [0]: 'same', 'valid', int, [ph, pw], [t, b, l, r]
    dilation = [1]                    # default [1]
    groups = [1]                      # default [1]
    dtype = ["float32"]               # default ["float32"]
    direction = ["fwd", "bwd_d"]      # default ["fwd"]; allowed: fwd, bwd_d, bwd_w
    [[layers]]                        # explicit problems: name, count (default 1), n (default 1),
    name = "resnet50:conv1"           # c, h, w, k, r, s, stride, padding, dilation, groups, dtype,
                                      # direction
    c = 3                             # (c, h, k, r required; the rest default as in ConvSpec)
    ...

A third source of problems, ``problems = [{id = "...", name = "...", count = 1}]`` (an id or a
benchdnn descriptor per entry), is what `SweepConfig.to_dict` writes, so that a sweep saved in
a run's ``meta.json`` loads again.

Order: the grid's product first, in ConvSpec field order (n, c, h, w, k, r, s, stride, padding,
dilation, groups, dtype, direction; the last varies fastest), then the layers, then the
problems.  A problem equal to an earlier one in identity *and* name is dropped.
`SweepConfig.with_directions` runs every problem of a sweep in the directions it names (the
command line's ``--dir``).

Invalid grid combinations are an error, not dropped: a grid is written by hand, and a
combination that cannot exist (a filter wider than the padded input, groups that do not divide
c or k) is nearly always a typo that a silent drop would hide.  The message names the first
offender and how many of the combinations are invalid; problems that do not fit one product
go into ``[[layers]]``.  With 'same' padding a filter never outgrows the padded input, so the
filter and stride sweeps cannot meet this.

Every error is a `ValueError` with a one-line message that starts with the source (a file path,
``preset:NAME``, ``batch:PATH``) and names the key path and the allowed values, e.g.
``sweep.toml: grid.filter: expected a list of positive integers, got 'x'``.  List indices in
key paths count from 0 (``layers[0]`` is the first ``[[layers]]`` table).
"""

from __future__ import annotations

import difflib
import itertools
import re
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import resources
from pathlib import Path

from . import benchdnn, registry
from .spec import DIRECTIONS, DTYPES, ConvSpec

DEVICES = ("cpu", "cuda")  # the devices a sweep may name (registry.DEVICES)


# ---------------------------------------------------------------------------- data


@dataclass(frozen=True)
class TimingConfig:
    """How each case is timed; the arguments of `convbench.timing.measure`.

    Attributes
    ----------
    min_time : float
        Seconds per value: loops are calibrated to reach it (> 0).
    values : int
        Values kept per case, after the warmups (>= 1).
    max_seconds : float
        Budget per case in seconds (> 0).
    warmups : int
        Values computed and thrown away (>= 0).
    """

    min_time: float = 0.02
    values: int = 5
    max_seconds: float = 5.0
    warmups: int = 1

    def __post_init__(self):
        for name in ("min_time", "max_seconds"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0:
                raise ValueError(f"{name}: expected a positive number of seconds, got {v!r}")
            object.__setattr__(self, name, float(v))
        for name, low in (("values", 1), ("warmups", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name}: expected an integer >= {low}, got {v!r}")


@dataclass(frozen=True)
class SweepConfig:
    """A sweep: problems, algorithms, devices and timing.  Build one with `from_dict`,
    `load_config`, `load_batch` or `preset`; `to_dict` gives it back as JSON-able data.

    Attributes
    ----------
    name : str
        Short label (letters, digits, ``_``, ``-``, ``.``).
    problems : tuple of ConvSpec
        In run order; never empty.  A ConvSpec's ``name`` and ``count`` carry the layer's
        label and how often it occurs in its network.
    algorithms : tuple of str or None
        Registered algorithm names; None runs every registered one but the opt-in ones
        (``default=False``: the scipy baseline).
    devices : tuple of str
        ``cpu`` and/or ``cuda``.
    timing : TimingConfig
    source : str
        Where it came from: ``preset:NAME``, a file path or ``batch:PATH``.
    description : str
        One line saying what the sweep answers (shown by ``convbench list``).
    """

    name: str
    problems: tuple[ConvSpec, ...]
    algorithms: tuple[str, ...] | None
    devices: tuple[str, ...] = ("cpu",)
    timing: TimingConfig = field(default_factory=TimingConfig)
    source: str = ""
    description: str = field(default="", compare=False)

    def __post_init__(self):
        put = object.__setattr__
        put(self, "problems", tuple(self.problems))
        if not self.problems:
            raise ValueError(f"{self.source or self.name}: empty sweep: no problems")
        if not all(isinstance(p, ConvSpec) for p in self.problems):
            raise ValueError("problems: expected ConvSpec instances")
        if self.algorithms is not None:
            put(self, "algorithms", tuple(self.algorithms))
        put(self, "devices", tuple(self.devices))

    def with_directions(self, directions) -> SweepConfig:
        """This sweep with each of its layers in every direction of ``directions`` (in that
        order after each layer's forward problem: a layer's three convolutions side by side)."""
        bad = [d for d in directions if d not in DIRECTIONS]
        if bad or not directions:
            raise ValueError(f"directions: unknown direction {bad[0] if bad else ''!r} "
                             f"(allowed: {', '.join(DIRECTIONS)})")
        wanted = [d for d in DIRECTIONS if d in directions]
        layers = dict.fromkeys((p.forward, p.name) for p in self.problems)
        problems = [p.with_(direction=d) for p, _ in layers for d in wanted]
        return replace(self, problems=tuple(problems))

    def to_dict(self) -> dict:
        """JSON-able data that `from_dict` turns back into an equal config (problems as
        ``{id, name, count}``)."""
        return {
            "name": self.name,
            "algorithms": None if self.algorithms is None else list(self.algorithms),
            "devices": list(self.devices),
            "timing": asdict(self.timing),
            "problems": [{"id": p.id, "name": p.name, "count": p.count} for p in self.problems],
            "source": self.source,
            "description": self.description,
        }


# ---------------------------------------------------------------------------- values

_TOP_KEYS = ("name", "description", "algorithms", "devices", "timing", "grid", "layers",
             "problems", "source")
_TIMING_KEYS = tuple(f.name for f in fields(TimingConfig))
_GRID_KEYS = ("n", "c", "h", "w", "k", "filter", "r", "s", "stride", "padding", "dilation",
              "groups", "dtype", "direction")
_LAYER_KEYS = ("name", "count", "n", "c", "h", "w", "k", "r", "s", "stride", "padding",
               "dilation", "groups", "dtype", "direction")
_PROBLEM_KEYS = ("id", "name", "count")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

# kind: (singular, plural) descriptions of the allowed values
_KINDS = {
    "int": ("a positive integer", "positive integers"),
    "pair": ("a positive integer or a pair [h, w] of them",
             "positive integers or pairs [h, w] of them"),
    "padding": ("'same', 'valid', an integer >= 0, [ph, pw] or [top, bottom, left, right]",
                "'same', 'valid', integers >= 0, [ph, pw] or [top, bottom, left, right]"),
    "dtype": (" or ".join(map(repr, DTYPES)), ", ".join(map(repr, DTYPES))),
    "direction": (" or ".join(map(repr, DIRECTIONS)), ", ".join(map(repr, DIRECTIONS))),
}
_FIELD_KIND = {"stride": "pair", "dilation": "pair", "padding": "padding", "dtype": "dtype",
               "direction": "direction"}


def _kind(key: str) -> str:
    return _FIELD_KIND.get(key, "int")


def _is_int(v, low: int = 1) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _value(key: str, v):
    """``v`` as a ConvSpec field value for ``key`` (lists become tuples), or None if invalid."""
    kind = _kind(key)
    if kind == "int":
        return v if _is_int(v) else None
    if kind == "pair":
        if isinstance(v, list | tuple):
            return tuple(v) if len(v) == 2 and all(_is_int(x) for x in v) else None
        return v if _is_int(v) else None
    if kind == "padding":
        if isinstance(v, str):
            return v.lower() if v.lower() in ("same", "valid") else None
        if isinstance(v, list | tuple):
            ok = len(v) in (2, 4) and all(_is_int(x, 0) for x in v)
            return tuple(v) if ok else None
        return v if _is_int(v, 0) else None
    return v if v in (DTYPES if kind == "dtype" else DIRECTIONS) else None


class _Source:
    """The label every error message starts with."""

    def __init__(self, label: str):
        self.label = label or "config"

    def error(self, where: str, msg: str) -> ValueError:
        return ValueError(f"{self.label}: {where}: {msg}" if where else f"{self.label}: {msg}")

    def table(self, where: str, value, allowed: tuple[str, ...]) -> dict:
        """``value`` checked to be a table with keys among ``allowed``."""
        if not isinstance(value, dict):
            raise self.error(where, f"expected a table, got {value!r}")
        for key in value:
            if key not in allowed:
                hint = difflib.get_close_matches(str(key), allowed, n=1)
                more = f"; did you mean {hint[0]!r}?" if hint else ""
                raise self.error(where, f"unknown key {key!r} (allowed: {', '.join(allowed)})"
                                 + more)
        return value

    def strings(self, where: str, value, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
        """A non-empty list of names among ``allowed``, duplicates dropped."""
        if not isinstance(value, list | tuple) or not value:
            raise self.error(where, f"expected a non-empty list of {what} names "
                                    f"(allowed: {', '.join(allowed)}), got {value!r}")
        for v in value:
            if v not in allowed:
                hint = difflib.get_close_matches(str(v), allowed, n=2)
                more = f"; did you mean {' or '.join(map(repr, hint))}?" if hint else ""
                raise self.error(where, f"unknown {what} {v!r} (allowed: {', '.join(allowed)})"
                                 + more)
        return tuple(dict.fromkeys(value))


# ---------------------------------------------------------------------------- schema


def from_dict(data: dict, source: str = "") -> SweepConfig:
    """A `SweepConfig` from the TOML schema (parsed), or from `SweepConfig.to_dict` output.

    Parameters
    ----------
    data : dict
        Top-level keys: name, algorithms, devices, timing, grid, layers, problems, source.
    source : str
        Where ``data`` came from; the label of every error message.  Defaults to
        ``data["source"]``.

    Raises
    ------
    ValueError
        One line naming the source, the key path and the allowed values.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{source or 'config'}: expected a table of sweep settings, "
                         f"got {type(data).__name__}")
    src_value = data.get("source", "")
    if not isinstance(src_value, str):
        raise ValueError(f"{source or 'config'}: source: expected a string, got {src_value!r}")
    source = source or src_value
    src = _Source(source)
    src.table("", data, _TOP_KEYS)

    name = data.get("name", _default_name(source))
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise src.error("name", "expected a non-empty string of letters, digits, '_', '-' "
                                f"and '.', got {name!r}")

    description = data.get("description", "")
    if not isinstance(description, str):
        raise src.error("description", f"expected a string, got {description!r}")

    algorithms = None
    if data.get("algorithms") is not None:
        known = tuple(dict.fromkeys(a.name for a in registry.algorithms()))
        algorithms = src.strings("algorithms", data["algorithms"], known, "algorithm")
    devices = src.strings("devices", data.get("devices", ["cpu"]), DEVICES, "device")

    timing_data = src.table("timing", data.get("timing", {}), _TIMING_KEYS)
    try:
        timing = TimingConfig(**timing_data)
    except ValueError as e:
        raise src.error("", f"timing.{e}") from None

    problems: list[ConvSpec] = []
    if "grid" in data:
        problems += _grid(src, data["grid"])
    if "layers" in data:
        problems += _layers(src, data["layers"])
    if "problems" in data:
        problems += _problems(src, data["problems"])
    if not problems:
        raise src.error("", "empty sweep: no problems (give a [grid], [[layers]] or problems)")
    unique = list(dict.fromkeys((p, p.name) for p in problems))
    return SweepConfig(name=name, problems=tuple(p for p, _ in unique), algorithms=algorithms,
                       devices=devices, timing=timing, source=source,
                       description=description)


def _default_name(source: str) -> str:
    stem = source.split(":", 1)[1] if source.startswith(("preset:", "batch:")) else source
    stem = Path(stem).stem if stem else "sweep"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem).lstrip("_.-") or "sweep"


def _grid(src: _Source, grid) -> list[ConvSpec]:
    grid = src.table("grid", grid, _GRID_KEYS)
    axes: dict[str, list] = {}
    for key, values in grid.items():
        plural = _KINDS[_kind(key)][1]
        if not isinstance(values, list) or not values:
            raise src.error(f"grid.{key}", f"expected a non-empty list of {plural}, "
                                           f"got {values!r}")
        axes[key] = [_value(key, v) for v in values]
        for v, value in zip(values, axes[key], strict=True):
            if value is None:
                raise src.error(f"grid.{key}", f"expected a list of {plural}, got {v!r}")
    if "filter" in axes and ("r" in axes or "s" in axes):
        raise src.error("grid", "give filter (r = s) or r and s, not both")
    if "s" in axes and "r" not in axes:
        raise src.error("grid.s", "needs r (or give filter, which sets r = s)")
    for key in ("c", "h", "k"):
        if key not in axes:
            raise src.error("grid", f"missing key {key!r} (required: c, h, k, and filter or r)")
    if "filter" not in axes and "r" not in axes:
        raise src.error("grid", "missing key 'filter' (required: c, h, k, and filter or r)")

    # product axes in ConvSpec field order; w and s follow h and r unless given
    order = [("n", ["n"]), ("c", ["c"]), ("h", ["h"]), ("w", ["w"]), ("k", ["k"]),
             ("filter", ["r", "s"]), ("r", ["r"]), ("s", ["s"]), ("stride", ["stride"]),
             ("padding", ["padding"]), ("dilation", ["dilation"]), ("groups", ["groups"]),
             ("dtype", ["dtype"]), ("direction", ["direction"])]
    present = [(key, targets) for key, targets in order if key in axes]
    specs, bad = [], []
    combos = list(itertools.product(*(axes[key] for key, _ in present)))
    for combo in combos:
        kwargs = {}
        for (_, targets), v in zip(present, combo, strict=True):
            kwargs.update(dict.fromkeys(targets, v))
        try:
            specs.append(ConvSpec(**kwargs))
        except ValueError as e:
            bad.append((kwargs, e))
    if bad:
        kwargs, e = bad[0]
        shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise src.error("grid", f"{len(bad)} of {len(combos)} combinations are invalid, the "
                                f"first ({shown}): {e}; narrow the grid or list the valid "
                                "problems as [[layers]]")
    return specs


def _layers(src: _Source, layers) -> list[ConvSpec]:
    if not isinstance(layers, list) or not layers:
        raise src.error("layers", f"expected a non-empty array of tables, got {layers!r}")
    specs = []
    for i, layer in enumerate(layers):
        where = f"layers[{i}]"
        layer = src.table(where, layer, _LAYER_KEYS)
        name = layer.get("name", "")
        if not isinstance(name, str):
            raise src.error(f"{where}.name", f"expected a string, got {name!r}")
        label = f"{where} ({name})" if name else where
        for key in ("c", "h", "k", "r"):
            if key not in layer:
                raise src.error(label, f"missing key {key!r} (required: c, h, k, r)")
        kwargs = {}
        for key, v in layer.items():
            if key == "name":
                continue
            value = _value(key, v)
            if value is None:
                at = f"{where}.{key} ({name})" if name else f"{where}.{key}"
                raise src.error(at, f"expected {_KINDS[_kind(key)][0]}, got {v!r}")
            kwargs[key] = value
        try:
            specs.append(ConvSpec(name=name, **kwargs))
        except ValueError as e:
            raise src.error(label, str(e)) from None
    return specs


def _problems(src: _Source, problems) -> list[ConvSpec]:
    if not isinstance(problems, list) or not problems:
        raise src.error("problems", f"expected a non-empty list of tables, got {problems!r}")
    specs = []
    for i, entry in enumerate(problems):
        where = f"problems[{i}]"
        entry = src.table(where, entry, _PROBLEM_KEYS)
        text = entry.get("id")
        if not isinstance(text, str):
            raise src.error(f"{where}.id", "expected a ConvSpec id or a benchdnn descriptor, "
                                           f"got {text!r}")
        try:
            spec = ConvSpec.parse(text)
        except ValueError as e:
            raise src.error(f"{where}.id", str(e)) from None
        name = entry.get("name", spec.name)
        if not isinstance(name, str):
            raise src.error(f"{where}.name", f"expected a string, got {name!r}")
        count = entry.get("count", 1)
        if not _is_int(count):
            raise src.error(f"{where}.count", f"expected a positive integer, got {count!r}")
        specs.append(spec.with_(name=name, count=count))
    return specs


# ---------------------------------------------------------------------------- files


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None


def load_config(path) -> SweepConfig:
    """A sweep from a TOML file; its name defaults to the file's stem."""
    path = Path(path)
    try:
        data = tomllib.loads(_read(path))
    except tomllib.TOMLDecodeError as e:  # its message ends "(at line L, column C)"
        raise ValueError(f"{path}: invalid TOML: {e}") from None
    return from_dict(data, source=str(path))


def load_batch(path) -> SweepConfig:
    """A sweep from a benchdnn batch file: one descriptor a line (`convbench.benchdnn`).

    ``#`` starts a comment (outside a quoted name); blank lines are skipped; ``--mb=N`` sets
    the batch of the descriptors after it.  Every algorithm runs on the CPU with the default
    timing; the name is the file's stem.  Errors name the line number.
    """
    path = Path(path)
    source = f"batch:{path}"
    specs = benchdnn.read_batch(_read(path), source)
    if not specs:
        raise ValueError(f"{source}: empty sweep: no problems (one descriptor a line)")
    unique = list(dict.fromkeys((p, p.name) for p in specs))
    return SweepConfig(name=_default_name(str(path)), problems=tuple(p for p, _ in unique),
                       algorithms=None, source=source)


# ---------------------------------------------------------------------------- presets


def _preset_dir():
    return resources.files("convbench") / "presets"


def preset_names() -> list[str]:
    """The built-in presets, sorted."""
    return sorted(p.name[: -len(".toml")] for p in _preset_dir().iterdir()
                  if p.name.endswith(".toml"))


def preset(name: str) -> SweepConfig:
    """The built-in preset ``name`` (``convbench/presets/NAME.toml``)."""
    names = preset_names()
    if name not in names:
        raise ValueError(f"preset: unknown preset {name!r} (allowed: {', '.join(names)})")
    source = f"preset:{name}"
    text = (_preset_dir() / f"{name}.toml").read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{source}: invalid TOML: {e}") from None
    return from_dict(data, source=source)

