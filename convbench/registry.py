"""The registry: every algorithm convbench can run, in one table read top to bottom.

Each entry names a kernel family in ``kernels/`` (or, for a ``baseline``, another library's
convolution: `convbench.baselines`) and states what it supports.  The harness reaches kernels
only through this table (two named exceptions import from ``convbench_kernels`` directly: the
float64 oracle, which judges every entry and so cannot be one, and the BLAS thread limit that
the roofline's GEMM shares with the kernels).  Users' algorithms follow the built-ins:
`register` at run time, or an installed plugin (`convbench.plugins`).

An entry's ``prepare(w, spec)`` does the once-per-layer work and returns
``compute(x, out)``, which writes into a preallocated output (see ``kernels``).
``supports(spec)`` returns None or the reason the algorithm does not compute
``spec``: a valid problem that an algorithm does not compute is *unsupported*,
never computed wrongly.  An entry computes the directions it lists (``fwd`` unless it says
more; the CPU families compute both gradients through `convbench_kernels.directions`), and
its ``supports`` refuses the others whatever the rule it was given says: an algorithm written
before directions existed can never be handed a gradient to compute as a forward problem.

Tolerances bound the error relative to the reference's largest magnitude,
``max|out - ref| / max|ref|``, per dtype.  Evidence: the largest value measured
over the kernel test cases and the ResNet-50 layers (see ``tests/kernels``),
times a margin of about 10.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from convbench_kernels import directions as _directions
from convbench_kernels import numba_cache
from convbench_kernels.cpu import (
    depthwise,
    direct,
    direct_weight,
    fft,
    fft_tiled,
    im2col,
    target,
    winograd,
    winograd_weight,
)

from . import baselines, plugins
from .spec import DIRECTIONS, DTYPES, ConvSpec


@dataclass(frozen=True)
class Algorithm:
    """One registry entry.

    Attributes
    ----------
    name : str
        Stable name used in results, the CLI and the API.
    family : str
        The algorithm family (``direct``, ``gemm``, ``fft``, ``winograd``, ``depthwise``,
        ``separable``, or ``baseline``: another library's convolution, a reference point that
        is shown and compared against but never ranked, see `convbench.baselines`).
    device : str
        ``cpu`` or ``cuda``.
    supports : callable
        ``supports(spec) -> str | None``.
    prepare : callable
        ``prepare(w, spec) -> compute(x, out)``.
    tolerance : dict
        Largest accepted ``max|out - ref| / max|ref|`` per dtype name.
    doc : str
        One line.
    workspace : callable, optional
        ``workspace(spec) -> bytes``: an estimate of what the algorithm allocates beyond input
        and output, used to skip problems over the memory budget before running them.
    operator : str
        ``conv`` for a standard convolution with OIHW weights; ``separable`` for the
        depthwise-then-pointwise operator, whose weights are a pair (see
        `convbench.separable_conv2d`) and which computes a different function from the
        standard convolution of the same shape, so it is compared on time, not ranked
        against exact algorithms.
    default : bool
        Whether a sweep that names no algorithms runs it.  False marks an *opt-in* entry (one
        too slow to run on every problem), run only when a sweep or ``--algo`` names it.
    directions : tuple of str
        The directions of a layer it computes (`convbench.spec.DIRECTIONS`).  For ``bwd_d``
        ``prepare`` takes the weights and ``compute(dy, dx)``; for ``bwd_w`` ``prepare`` takes
        the input x and keeps it (all the work is the call's: x and dy are new at every
        training step) and ``compute(dy, dw)``.
    """

    name: str
    family: str
    device: str
    supports: Callable[[ConvSpec], str | None]
    prepare: Callable
    tolerance: dict
    doc: str
    operator: str = "conv"
    workspace: Callable[[ConvSpec], int] | None = None
    default: bool = True
    directions: tuple[str, ...] = ("fwd",)

    def __post_init__(self):
        if getattr(self.supports, "rule", None) is None:  # not yet wrapped (see `_directed`)
            object.__setattr__(self, "supports", _directed(self.supports, self.directions))


def _directed(rule: Callable, directions: tuple[str, ...]) -> Callable:
    """``rule`` refusing, with the reason, the directions an entry does not compute."""

    def supports(spec):
        if spec.direction not in directions:
            return f"computes {', '.join(directions)} only, not {spec.direction}"
        return rule(spec)

    supports.rule = rule
    return supports


def _every_direction(supports, prepare, workspace, weight=None) -> dict:
    """The fields of a CPU entry that computes all three directions from its forward kernels
    (`convbench_kernels.directions`); ``weight``: the family's own (supports, prepare,
    workspace) of the weight gradient, where it has one."""
    supports_w, prepare_w, workspace_w = weight or (None, None, None)
    return dict(supports=_directions.supporting(supports, supports_w),
                prepare=_directions.preparing(prepare, prepare_w),
                workspace=_directions.sizing(workspace, workspace_w), directions=DIRECTIONS)


# Tolerance evidence (float32, max|err|/max|ref|, measured on the kernel test cases and the
# ResNet-50 layers): direct and im2col ~2e-7 .. 1e-6 (sums of c*r*s products);
# fft ~1e-6 .. 6e-6 (round-off spread over the whole transform); winograd_f23 ~1e-6;
# winograd_f43 ~4e-6 .. 1e-5 (the transforms' larger coefficients amplify rounding);
# winograd_f63 1.6e-7 .. 8e-6 on the test cases, 1e-5 .. 1.9e-5 on the ResNet-50 layers (x ~
# N(0, 1), w ~ N(0, 1/(9c)), seeds 0-2; 64@56 1.0e-5, 128@28 1.9e-5, 256@14 1.7e-5, 512@7
# 1.2e-5), so 2e-4 is 10x the largest; float64 at most 3.7e-14, so 5e-13 (13x); its input
# gradient (F(6,3) phases) <= 7.4e-6 and weight gradient (F(3x3,4x4)) <= 1.9e-6 on the cases;
# depthwise and separable ~2e-7 .. 1e-6.
_EXACT = {"float32": 2e-5, "float64": 1e-12}

REGISTRY: tuple[Algorithm, ...] = (
    Algorithm("direct", "direct", "cpu", tolerance=_EXACT,
              doc="Blocked direct loops over output channels and pixels; any problem; "
                  "weight gradient: tiles of (channel, tap) sums over pixels.",
              **_every_direction(direct.supports, direct.prepare, direct.workspace,
                                 (direct.supports, direct_weight.prepare,
                                  direct_weight.workspace))),
    Algorithm("im2col", "gemm", "cpu", tolerance=_EXACT,
              doc="im2col then one BLAS GEMM per image and group; 1x1 s1 skips the copy; "
                  "weight gradient: dy times the columns' transpose.",
              **_every_direction(im2col.supports, im2col.prepare, im2col.workspace,
                                 (im2col.supports, im2col.prepare_weight,
                                  im2col.workspace_weight))),
    Algorithm("fft", "fft", "cpu", tolerance={"float32": 1e-4, "float64": 1e-11},
              doc="Real 2-D FFTs (rocket-fft), filter spectra prepared, per-frequency "
                  "channel sums.",
              **_every_direction(fft.supports, fft.prepare, fft.workspace)),
    Algorithm("fft_tiled", "fft", "cpu", tolerance={"float32": 1e-4, "float64": 1e-11},
              doc="Overlap-save over 8x8, 16x16 or 32x32 tiles, transforms and per-frequency "
                  "channel sums all GEMMs; stride 1.",
              **_every_direction(fft_tiled.supports, fft_tiled.prepare, fft_tiled.workspace)),
    Algorithm("winograd_f23", "winograd", "cpu", tolerance={"float32": 5e-5, "float64": 1e-11},
              doc="Winograd F(2x2,3x3): 16 GEMMs over channels; 3x3, stride 1, dilation 1; "
                  "weight gradient F(3x3,2x2).",
              **_every_direction(winograd.supports, winograd.prepare_f23,
                                 winograd.workspace_f23,
                                 (winograd_weight.supports, winograd_weight.prepare_f23,
                                  winograd_weight.workspace_f23))),
    Algorithm("winograd_f43", "winograd", "cpu", tolerance={"float32": 2e-4, "float64": 1e-10},
              doc="Winograd F(4x4,3x3): 36 GEMMs over channels; 3x3, stride 1, dilation 1; "
                  "weight gradient F(3x3,4x4).",
              **_every_direction(winograd.supports, winograd.prepare_f43,
                                 winograd.workspace_f43,
                                 (winograd_weight.supports, winograd_weight.prepare_f43,
                                  winograd_weight.workspace_f43))),
    Algorithm("winograd_f63", "winograd", "cpu", tolerance={"float32": 2e-4, "float64": 5e-13},
              doc="Winograd F(6x6,3x3): 64 GEMMs over channels; 3x3, stride 1, dilation 1; "
                  "weight gradient F(3x3,4x4), as winograd_f43's.",
              **_every_direction(winograd.supports, winograd.prepare_f63,
                                 winograd.workspace_f63,
                                 (winograd_weight.supports, winograd_weight.prepare_f43,
                                  winograd_weight.workspace_f43))),
    Algorithm("depthwise", "depthwise", "cpu", tolerance=_EXACT,
              doc="Depthwise (groups == c, channel multiplier k/c) plane by plane.",
              **_every_direction(depthwise.supports, depthwise.prepare, depthwise.workspace)),
    Algorithm("separable", "separable", "cpu", depthwise.supports_separable,
              depthwise.prepare_separable, _EXACT,
              "Depthwise r x s then pointwise 1x1 GEMM, for the standard conv it replaces; "
              "the gradient of its input, stages reversed.",
              operator="separable", workspace=depthwise.workspace_separable,
              directions=("fwd", "bwd_d")),
)



def _cuda(module: str, name: str) -> Callable:
    """``convbench_kernels.cuda.<module>.<name>``, imported on first call: ``import convbench``
    must work where numba-cuda is not installed.  (Each family's ``supports`` is the rule of
    `convbench_kernels.contract` that its CPU twin uses too.)"""

    def call(*args, **kwargs):
        module_ = importlib.import_module(f"convbench_kernels.cuda.{module}")
        return getattr(module_, name)(*args, **kwargs)

    call.__name__ = f"{module}.{name}"
    return call


class _DeviceArrays:
    """`convbench_kernels.cuda.strided.DEVICE`, imported on first use (see `_cuda`)."""

    def __getattr__(self, name):
        return getattr(importlib.import_module("convbench_kernels.cuda.strided").DEVICE, name)


def _cuda_directions(rule, module: str, prepare: str, workspace: str,
                     weight: bool = False) -> dict:
    """The fields of a CUDA entry computing the forward pass of ``module.prepare`` and the
    gradient of the input (the phases of `convbench_kernels.directions` on device arrays)
    and, with ``weight``, the gradient of the weights by `convbench_kernels.cuda.weight_grad`
    (the other families prepare filters on the host; in that direction the filter is dy, on
    the device)."""
    return dict(
        supports=_directions.supporting(rule, rule if weight else None),
        prepare=_directions.preparing(_cuda(module, prepare),
                                      _cuda("weight_grad", "prepare") if weight else None,
                                      arrays=_DeviceArrays()),
        workspace=_directions.sizing(_cuda(module, workspace),
                                     _cuda("weight_grad", "workspace") if weight else None),
        directions=DIRECTIONS if weight else ("fwd", "bwd_d"))


# CUDA twins: the same names, rules and tolerances (evidence: the simulator runs of
# tests/cuda, F(6,3) <= 2.8e-6, F(4,3) <= 1.2e-6 and the rest <= 2e-7 in float32).
REGISTRY += (
    Algorithm("direct", "direct", "cuda", tolerance=_EXACT,
              doc="One thread per output pixel and 4 output channels; any problem; weight "
                  "gradient one block per channel pair.",
              **_cuda_directions(direct.supports, "direct", "prepare", "workspace", True)),
    Algorithm("im2col", "gemm", "cuda", tolerance=_EXACT,
              doc="im2col kernel then a tiled shared-memory GEMM kernel; 1x1 s1 skips the copy.",
              **_cuda_directions(im2col.supports, "im2col", "prepare", "workspace")),
    Algorithm("fft", "fft", "cuda", tolerance={"float32": 1e-4, "float64": 1e-11},
              doc="Radix-2 Stockham FFT kernels, per-frequency channel sums, stride by "
                  "subsampling.",
              **_cuda_directions(fft.supports, "fft", "prepare", "workspace")),
    Algorithm("winograd_f23", "winograd", "cuda", tolerance={"float32": 5e-5, "float64": 1e-11},
              doc="Winograd F(2x2,3x3): transform kernels and a batched GEMM kernel.",
              **_cuda_directions(winograd.supports, "winograd", "prepare_f23",
                                 "workspace_f23")),
    Algorithm("winograd_f43", "winograd", "cuda", tolerance={"float32": 2e-4, "float64": 1e-10},
              doc="Winograd F(4x4,3x3): transform kernels and a batched GEMM kernel.",
              **_cuda_directions(winograd.supports, "winograd", "prepare_f43",
                                 "workspace_f43")),
    Algorithm("winograd_f63", "winograd", "cuda", tolerance={"float32": 2e-4, "float64": 5e-13},
              doc="Winograd F(6x6,3x3): transform kernels and a batched GEMM kernel.",
              **_cuda_directions(winograd.supports, "winograd", "prepare_f63",
                                 "workspace_f63")),
    Algorithm("depthwise", "depthwise", "cuda", tolerance=_EXACT,
              doc="Depthwise, one thread per output element.",
              **_cuda_directions(depthwise.supports, "depthwise", "prepare", "workspace")),
    Algorithm("separable", "separable", "cuda", depthwise.supports_separable,
              _cuda("depthwise", "prepare_separable"), _EXACT,
              "Depthwise kernel then the pointwise 1x1 as one batched GEMM launch.",
              operator="separable", workspace=_cuda("depthwise", "workspace_separable")),
)


def _installed(package: str) -> bool:
    """Whether ``package`` can be imported, without importing it (``import convbench`` must
    stay light and work without the ``baselines`` extra)."""
    return importlib.util.find_spec(package) is not None


# Baselines (family ``baseline``): other libraries' convolutions, called as their users call
# them, timed and checked like the kernels above; compared against, never ranked
# (`convbench.analysis.ranked`).  Each is present only when its package is installed.
# Tolerances (max|err|/max|ref|, the kernels' _EXACT): torch float32 (oneDNN) 5e-8 .. 5e-7 on
# the kernel test cases, 2e-7 .. 9e-7 on the ResNet-50 layers; float64 (im2col + MKL) <= 4e-16.
# scipy float32 7e-8 .. 3e-7 (per-pair sums in the problem's dtype), float64 <= 2e-16.
def baseline_entries() -> tuple[Algorithm, ...]:
    """The baseline entries whose package is installed (`_installed`), in registry order."""
    out = ()
    if _installed("torch"):
        out += (Algorithm("torch", "baseline", "cpu", baselines.torch_supports,
                          baselines.torch_prepare, _EXACT,
                          "PyTorch CPU F.conv2d and its gradients (oneDNN in float32, im2col + "
                          "MKL in float64).",
                          workspace=baselines.torch_workspace, directions=DIRECTIONS),)
    if _installed("scipy"):
        out += (Algorithm("scipy", "baseline", "cpu", baselines.scipy_supports,
                          baselines.scipy_prepare, _EXACT,
                          "scipy.signal.correlate2d per channel pair; opt-in, small problems.",
                          workspace=baselines.scipy_workspace, default=False),)
    return out


REGISTRY += baseline_entries()

DEVICES = ("cpu", "cuda")

# Users' algorithms, after the built-ins: added by `register` at run time or by an installed
# plugin's entry point (`convbench.plugins`).
_USER: list[Algorithm] = []


def register(algo: Algorithm, *, replace: bool = False) -> Algorithm:
    """Add a user's algorithm: sweeps, reports and ``conv2d(algo=...)`` then treat it as they
    treat the built-ins (same reference check, tolerance, timing and rows).

    Parameters
    ----------
    algo : Algorithm
        Its ``prepare(w, spec)`` returns ``compute(x, out)`` writing into ``out`` (see
        `convbench_kernels.contract`); ``supports(spec)`` returns None or a reason.
    replace : bool
        Replace an algorithm registered earlier under the same name and device.

    Returns
    -------
    Algorithm
        ``algo``, so that ``register`` can be used where the entry is defined.

    Raises
    ------
    ValueError
        When a field breaks a rule (naming it), or the name is taken: a built-in's always, a
        registered one's unless ``replace``.
    """
    plugins.check(algo, DEVICES, DTYPES, DIRECTIONS)
    if any(a.name == algo.name and a.device == algo.device for a in REGISTRY):
        raise ValueError(f"name: {algo.name!r} is a built-in algorithm on {algo.device}; "
                         "choose another name")
    same = [i for i, a in enumerate(_USER) if (a.name, a.device) == (algo.name, algo.device)]
    if same and not replace:
        raise ValueError(f"name: {algo.name!r} is already registered on {algo.device} "
                         "(register(..., replace=True) replaces it)")
    if same:
        _USER[same[0]] = algo
    else:
        _USER.append(algo)
    return algo


def unregister(name: str, device: str = "cpu") -> None:
    """Remove a user's algorithm (a built-in cannot be removed); a ValueError if unknown."""
    for i, a in enumerate(_USER):
        if (a.name, a.device) == (name, device):
            del _USER[i]
            return
    raise ValueError(f"name: no registered user algorithm {name!r} on {device}")


def _entries() -> tuple[Algorithm, ...]:
    """Built-ins, then users' algorithms (installed plugins are read on the first call)."""
    plugins.load(register)
    return REGISTRY + tuple(_USER)


_INDEX: dict = {"key": None, "entries": {}}


def _by_name() -> dict[tuple[str, str], Algorithm]:
    """``(name, device) -> entry``, rebuilt when the entries change: `get` is on every
    ``conv2d`` call's path, where a scan of the registry cost about a microsecond."""
    plugins.load(register)
    key = (REGISTRY, *_USER)  # held, so that no id is reused; equal entries compare fast
    if _INDEX["key"] != key:
        _INDEX["entries"] = {(a.name, a.device): a for a in reversed(_entries())}
        _INDEX["key"] = key
    return _INDEX["entries"]


def algorithms(device: str | None = None) -> list[Algorithm]:
    """The registry entries, all or those of one device: built-ins first, then users'."""
    if device is not None and device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    return [a for a in _entries() if device is None or a.device == device]


def get(name: str, device: str = "cpu") -> Algorithm:
    """The entry called ``name`` on ``device``; a ValueError lists the allowed names."""
    entry = _by_name().get((name, device))
    if entry is not None:
        return entry
    entries = algorithms(device)
    names = ", ".join(a.name for a in entries) or "none registered"
    raise ValueError(f"algo must be one of {names} on device {device!r}, got {name!r}")


# The CPU families whose shapes are tuned per machine (`convbench.tuning`): each module offers
# ``defaults(target)``, ``space(target)`` and ``prepare(w, spec, params)``.
TUNABLE = {"direct": direct, "im2col": im2col, "fft": fft, "fft_tiled": fft_tiled,
           "winograd": winograd, "depthwise": depthwise}


def tunable_families() -> dict:
    """The tunable families by name (their modules)."""
    return dict(TUNABLE)


def install_params(family: str, params: dict | None) -> None:
    """Run ``family`` with ``params`` from now on (None, or empty: its defaults)."""
    target.install(family, params)


def cache_saves_locked() -> bool:
    """Whether this process's saves into Numba's cache are whole against other processes'
    (`convbench_kernels.numba_cache`: on wherever ``flock`` is)."""
    return numba_cache.lock_cache_saves()


def installed_params() -> dict[str, dict]:
    """The parameters `install_params` put in place, per family (absent: its defaults)."""
    return target.installed()


def cpu_target():
    """The machine the CPU kernels are compiled for (`convbench_kernels.cpu.target.Target`)."""
    return target.current()


def origin(algo: Algorithm) -> str:
    """Where an entry comes from: ``convbench``, ``register()``, or a plugin's entry point."""
    if any(a is algo for a in REGISTRY):
        return "convbench"
    return plugins.source(algo.name, algo.device) or "register()"
