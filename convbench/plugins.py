"""Users' own algorithms: checked on the way in, and discovered from installed packages.

Two ways in, one rule: `convbench.register` adds an `Algorithm` at run time; a package adds
them by declaring an entry point in the group ``convbench.algorithms`` (how pytest finds its
plugins), whose object is an `Algorithm`, a list of them, or a function returning either::

    [project.entry-points."convbench.algorithms"]
    myconv = "myconv:ALGORITHM"

Entry points are read once, the first time the registry is asked for its algorithms.  A
plugin that fails to import, gives something other than algorithms, or breaks a rule of
`check` is left out with a `PluginWarning` naming it (and listed by `problems`, which a run
records in its ``meta.json``): a broken plugin never stops a sweep.  An algorithm that loads
but fails when it runs becomes ``error`` rows, and one that computes wrongly ``accurate =
False`` rows, exactly as a built-in would.  ``CONVBENCH_NO_PLUGINS=1`` skips discovery.
"""

from __future__ import annotations

import inspect
import math
import os
import re
import warnings
from importlib import metadata

GROUP = "convbench.algorithms"
NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
OPERATORS = ("conv", "separable")


class PluginWarning(UserWarning):
    """A plugin (an entry point of the group ``convbench.algorithms``) was left out."""


_state: dict = {"loaded": False, "problems": [], "sources": {}}


def check(algo, devices: tuple[str, ...], dtypes: tuple[str, ...],
          directions: tuple[str, ...] = ("fwd", "bwd_d", "bwd_w")) -> None:
    """Raise ValueError, naming the field and what is allowed, unless ``algo`` can be run.

    Checks the fields' types and values, and that ``supports`` takes ``(spec)``, ``prepare``
    ``(w, spec)`` and ``workspace`` ``(spec)`` where their signatures can be read.
    """
    from .registry import Algorithm

    if not isinstance(algo, Algorithm):
        raise ValueError(f"expected a convbench.Algorithm, got {type(algo).__name__}")
    label = f"algorithm {algo.name!r}"
    if not isinstance(algo.name, str) or not NAME_RE.fullmatch(algo.name):
        raise ValueError(f"name: expected letters, digits, '_', '-' or '.', starting with a "
                         f"letter, got {algo.name!r}")
    if not isinstance(algo.family, str) or not algo.family.strip():
        raise ValueError(f"{label}: family: expected a non-empty string, got {algo.family!r}")
    if algo.device not in devices:
        raise ValueError(f"{label}: device: expected one of {', '.join(devices)}, "
                         f"got {algo.device!r}")
    if algo.operator not in OPERATORS:
        raise ValueError(f"{label}: operator: expected one of {', '.join(OPERATORS)}, "
                         f"got {algo.operator!r}")
    if not isinstance(algo.doc, str):
        raise ValueError(f"{label}: doc: expected a string, got {algo.doc!r}")
    tol = algo.tolerance
    if (not isinstance(tol, dict) or set(tol) != set(dtypes)
            or not all(_positive(v) for v in tol.values())):
        raise ValueError(f"{label}: tolerance: expected {{{', '.join(map(repr, dtypes))}}} "
                         f"mapped to positive numbers (max|out - ref| / max|ref|), got {tol!r}")
    dirs = algo.directions
    if (not isinstance(dirs, tuple) or not dirs or "fwd" not in dirs
            or not set(dirs) <= set(directions)):
        raise ValueError(f"{label}: directions: expected a tuple of {', '.join(directions)} "
                         f"holding fwd, got {dirs!r}")
    for field, args in (("supports", 1), ("prepare", 2), ("workspace", 1)):
        fn = getattr(algo, field)
        fn = getattr(fn, "rule", fn)  # the rule as given, before `registry._directed`
        if fn is None and field == "workspace":
            continue
        if not callable(fn):
            raise ValueError(f"{label}: {field}: expected a callable, got {fn!r}")
        if not _takes(fn, args):
            want = "(spec)" if args == 1 else "(w, spec)"
            raise ValueError(f"{label}: {field}: must accept {want}, its signature is "
                             f"{inspect.signature(fn)}")


def _positive(v) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            and v > 0)


def _takes(fn, count: int) -> bool:
    """Whether ``fn`` accepts ``count`` positional arguments (True when unreadable)."""
    try:
        inspect.signature(fn).bind(*([None] * count))
    except TypeError:
        return False
    except ValueError:  # a builtin or C function without a readable signature
        return True
    return True


def load(register) -> None:
    """Register the algorithms of every installed entry point of `GROUP`, once per process.

    ``register`` is `convbench.registry.register`.  Each failure is a `PluginWarning` and an
    entry of `problems`; nothing here raises.
    """
    if _state["loaded"]:
        return
    _state["loaded"] = True
    if os.environ.get("CONVBENCH_NO_PLUGINS") == "1":
        return
    for ep in metadata.entry_points(group=GROUP):
        where = f"plugin {ep.name!r} ({ep.value}"
        where += f", from {ep.dist.name} {ep.dist.version})" if ep.dist else ")"
        try:
            for algo in _algorithms(ep.load()):
                register(algo)
                _state["sources"][(algo.name, algo.device)] = where[len("plugin "):]
        except Exception as err:  # a broken plugin is a warning, never a crash
            _problem(f"{where} left out: {type(err).__name__}: {_first_line(err)}")


def _algorithms(obj) -> list:
    """The algorithms an entry point's object gives: itself, its items, or its result."""
    from .registry import Algorithm

    if callable(obj) and not isinstance(obj, Algorithm):
        obj = obj()
    items = [obj] if isinstance(obj, Algorithm) else obj
    try:
        items = list(items)
    except TypeError:
        raise ValueError(f"expected an Algorithm, a list of them or a function returning "
                         f"either, got {type(obj).__name__}") from None
    for item in items:
        if not isinstance(item, Algorithm):
            raise ValueError(f"expected Algorithm items, got {type(item).__name__}")
    return items


def _first_line(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else ""


def _problem(text: str) -> None:
    _state["problems"].append(text)
    warnings.warn(text, PluginWarning, stacklevel=3)


def problems() -> list[str]:
    """One line per plugin left out in this process, in the order met."""
    return list(_state["problems"])


def source(name: str, device: str) -> str | None:
    """Where a plugin's algorithm came from (entry point and distribution), or None."""
    return _state["sources"].get((name, device))
