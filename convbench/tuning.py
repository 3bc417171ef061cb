"""Kernel parameters measured on this machine: `tune` searches, the cache keeps, `use` installs.

Every CPU family's tunable shapes (direct's register tile, ...) have defaults derived from the
compile target (`convbench_kernels.cpu.target`) and a search space (``space(target)`` in the
family's module).  `tune` measures the space on a few representative problems
(`PROBLEMS`: ResNet-50's 3x3 and 1x1 layers, its 7x7 stride-2 first layer, a large filter,
MobileNet's depthwise layers from 56x56 to 7x7; each family on those it computes) and keeps
a candidate only when it beats the defaults beyond the measurements' spread:

- every candidate is prepared (and so compiled) once per problem, then timed in interleaved
  rounds (each candidate on each problem in turn, again and again), keeping each one's best
  round;
- a candidate's *ratio* is the geometric mean, over the problems, of its time over the
  defaults'; its *spread* the geometric mean of its worst round over its best, less 1;
- the fastest candidate is chosen when its ratio is below ``1 - max(spread, NOISE_FLOOR)``
  (its own spread and the defaults'), else the defaults stay.

The search is bounded (``budget`` seconds in all, shared among the families, compilation
included): candidates are measured in order, defaults first, until a family's share runs out.
The result is cached per machine key (`convbench.cache`); a run (`use`) installs it, or, when
the key has no tuning, runs the defaults and says so once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import cache, registry
from .spec import ConvSpec
from .timing import measure

FORMAT = 2  # the file's layout: 2 since depthwise's parameters lost s2_min_ow
DEFAULT_BUDGET = 120.0  # seconds
NOISE_FLOOR = 0.02  # a lead under 2 % is not believed, whatever the spread says
ROUNDS = 3
MIN_TIME = 0.01  # seconds per timed value

PROBLEMS = (
    ConvSpec(c=64, h=56, k=64, r=3, padding=1, name="3x3 64@56"),
    ConvSpec(c=128, h=28, k=128, r=3, padding=1, name="3x3 128@28"),
    ConvSpec(c=256, h=14, k=256, r=3, padding=1, name="3x3 256@14"),
    ConvSpec(c=512, h=7, k=512, r=3, padding=1, name="3x3 512@7"),
    ConvSpec(c=64, h=56, k=256, r=1, name="1x1 64->256@56"),
    ConvSpec(c=1024, h=14, k=256, r=1, name="1x1 1024->256@14"),
    ConvSpec(c=3, h=224, k=64, r=7, stride=2, padding=3, name="7x7 s2 3->64@224"),
    ConvSpec(c=32, h=64, k=32, r=9, padding="same", name="9x9 32@64"),
    ConvSpec(c=128, h=56, k=128, r=3, groups=128, padding=1, name="dw 3x3 128@56"),
    ConvSpec(c=256, h=28, k=256, r=3, stride=2, groups=256, padding=1, name="dw 3x3 s2 256@28"),
    ConvSpec(c=512, h=14, k=512, r=3, groups=512, padding=1, name="dw 3x3 512@14"),
    ConvSpec(c=1024, h=7, k=1024, r=3, groups=1024, padding=1, name="dw 3x3 1024@7"),
)


@dataclass
class Tuning:
    """The parameters a run uses.

    Attributes
    ----------
    params : dict
        Per family, the parameters chosen (an empty dict: its defaults).
    source : str
        ``cache`` (read from the machine's tuning file), ``tuned`` (measured now) or
        ``defaults`` (no tuning for this machine key).
    note : str
        One line for the user: where the tuning comes from, or why the defaults run.
    path : str
        The cache file.
    results : dict
        Per family, what was measured (``tuned``, ``cache``).
    """

    params: dict
    source: str
    note: str
    path: str = ""
    results: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"source": self.source, "note": self.note, "path": self.path,
                "params": self.params}


def _key(threads: int) -> dict:
    return {**cache.machine_key(threads), "format": FORMAT}


def load(threads: int) -> Tuning:
    """The cached tuning of this machine key at ``threads``, or the defaults with the
    reason (not tuned here, a foreign or corrupt file)."""
    key = _key(threads)
    path = cache.path("tuning", key)
    data, why = cache.read(path, key, FORMAT)
    families = registry.tunable_families()
    if data is None:
        note = ("not tuned on this machine: kernels run their target-derived defaults "
                "(convbench tune measures better ones)")
        if why != "missing":
            note = f"tuning cache {why}; " + note
        return Tuning({f: {} for f in families}, "defaults", note, str(path))
    params = {f: dict(data.get("params", {}).get(f) or {}) for f in families}
    return Tuning(params, "cache", f"tuned parameters from {path}", str(path),
                  data.get("results", {}))


def install(tuning: Tuning) -> None:
    """Make the kernels run ``tuning``'s parameters from now on."""
    for family, params in tuning.params.items():
        registry.install_params(family, params)


def use(threads: int) -> Tuning:
    """`load` and `install`: what a run does at its start."""
    tuning = load(threads)
    install(tuning)
    return tuning


# ---------------------------------------------------------------------------------------------
# Measuring

def _arrays(spec: ConvSpec):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(spec.input_shape).astype(spec.dtype)
    w = rng.standard_normal(spec.weight_shape).astype(spec.dtype)
    return x, w, np.empty(spec.output_shape, spec.dtype)


def _candidates(module, target) -> list[dict]:
    """The family's defaults first, then the rest of its space."""
    first = module.defaults(target)
    return [first] + [p for p in module.space(target) if p != first]


def _prepared(module, candidates, problems, deadline: float, tick) -> list[tuple[dict, list]]:
    """``(params, [compute per problem])`` for each candidate prepared before ``deadline``
    (the defaults always); a candidate that fails to prepare is left out."""
    out = []
    for i, params in enumerate(candidates):
        if i and time.perf_counter() > deadline:
            break
        try:
            computes = []
            for spec, (x, w, y) in problems:
                compute = module.prepare(w, spec, params)
                compute(x, y)  # compiles
                computes.append(compute)
        except Exception:  # a candidate that cannot run is not a candidate
            continue
        finally:
            tick()
        out.append((params, computes))
    return out


def _rounds(prepared, problems) -> np.ndarray:
    """Seconds (candidates, rounds, problems): every candidate on every problem in turn,
    `ROUNDS` times."""
    t = np.empty((len(prepared), ROUNDS, len(problems)))
    for r in range(ROUNDS):
        for i, (_, computes) in enumerate(prepared):
            for j, ((_, (x, _w, y)), compute) in enumerate(zip(problems, computes,
                                                                 strict=True)):
                t[i, r, j] = measure(lambda c=compute, x=x, y=y: c(x, y), min_time=MIN_TIME,
                                     values=3, warmups=0).stats["median"]
    return t


def choose(times: np.ndarray) -> tuple[int, list[dict]]:
    """The index of the candidate to keep (0, the defaults, unless another beats them beyond
    the spread) and per candidate its ``ratio`` and ``spread`` (see the module docstring).

    ``times`` is (candidates, rounds, problems) seconds.
    """
    best = times.min(axis=1)  # (candidates, problems)
    worst = times.max(axis=1)
    ratio = np.exp(np.log(best / best[0]).mean(axis=1))
    spread = np.exp(np.log(worst / best).mean(axis=1)) - 1
    scores = [{"ratio": float(r), "spread": float(s)} for r, s in zip(ratio, spread,
                                                                       strict=True)]
    i = int(np.argmin(ratio))
    if i and ratio[i] < 1 - max(spread[i], spread[0], NOISE_FLOOR):
        return i, scores
    return 0, scores


def tune_family(family: str, module, budget: float, tick=lambda: None) -> dict:
    """Measure ``family``'s space for at most about ``budget`` seconds; its result:
    ``params`` chosen, ``decision`` in words, and every candidate's ``ratio`` and
    ``spread``."""
    target = registry.cpu_target()
    start = time.perf_counter()
    supported = [s for s in PROBLEMS if module.supports(s) is None]
    problems = [(s, _arrays(s)) for s in supported]
    candidates = _candidates(module, target)
    if not problems:
        for _ in candidates:
            tick()
        return {"params": {}, "problems": [], "seconds": 0.0, "candidates": [], "untried": 0,
                "decision": f"kept the defaults {_fmt(candidates[0])}: it computes none of "
                            "the tuning problems"}
    # half the share for preparing (compiling) candidates, the rest for timing them
    prepared = _prepared(module, candidates, problems, start + budget / 2, tick)
    times = _rounds(prepared, problems)
    i, scores = choose(times)
    chosen = prepared[i][0]
    defaults = prepared[0][0]
    if i:
        decision = (f"{_fmt(chosen)} runs {1 / scores[i]['ratio']:.2f}x the defaults' speed "
                    f"({_fmt(defaults)}; spread {scores[i]['spread']:.1%})")
    else:
        decision = (f"kept the defaults {_fmt(defaults)}: no candidate beat them beyond the "
                    "spread")
    return {"params": chosen if i else {}, "decision": decision,
            "problems": [s.name for s in supported], "seconds": time.perf_counter() - start,
            "candidates": [{"params": p, **sc} for (p, _), sc in zip(prepared, scores,
                                                                     strict=True)],
            "untried": len(candidates) - len(prepared)}


def _fmt(params: dict) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in params.items()) + "}"


def tune(threads: int, budget: float = DEFAULT_BUDGET, families=None,
         progress: Callable | None = None) -> Tuning:
    """Measure every tunable family (or ``families``) at ``threads`` within ``budget``
    seconds, cache the result under this machine's key, install it, and return it.

    ``progress(total)`` is called once with the number of steps and returns a function called
    after each step (a progress bar's update).
    """
    import numba

    all_families = registry.tunable_families()
    names = list(all_families) if families is None else list(families)
    unknown = [f for f in names if f not in all_families]
    if unknown:
        raise ValueError(f"--family: unknown family {unknown[0]!r} (allowed: "
                         f"{', '.join(all_families)})")
    numba.set_num_threads(threads)
    target = registry.cpu_target()
    steps = sum(len(_candidates(all_families[f], target)) for f in names)
    tick = progress(steps) if progress else (lambda: None)
    share = budget / max(len(names), 1)
    start = time.perf_counter()
    previous = load(threads)
    results, params = dict(previous.results), dict(previous.params)
    for f in names:
        registry.install_params(f, None)  # measure against the target-derived defaults
        results[f] = tune_family(f, all_families[f], share, tick)
        params[f] = results[f]["params"]
    key = _key(threads)
    path = cache.path("tuning", key)
    data = {"format": FORMAT, "key": key, "params": params, "results": results,
            "target": target.to_dict(), "budget_s": budget,
            "seconds": round(time.perf_counter() - start, 1),
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    written = cache.write(path, data)
    note = (f"tuned on this machine and cached in {path}" if written
            else "tuned on this machine (the cache could not be written)")
    tuning = Tuning(params, "tuned", note, str(path), results)
    install(tuning)
    return tuning

