"""Every registered CPU algorithm against the float64 reference.

Parametrized from the registry, so that a new algorithm is tested without writing a test.
Outputs are filled with NaN before a kernel runs, so an element it fails to write fails.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from convbench import registry
from convbench.spec import ConvSpec
from convbench_kernels.reference import composed_weight, reference_conv2d
from tests.cases import CASES, problems, random_arrays, relative_error, separable_weights

ALGOS = registry.algorithms("cpu")


def reference(spec, x, w):
    return reference_conv2d(x, w, stride=(spec.sh, spec.sw), pads=spec.pads,
                            dilation=(spec.dh, spec.dw), groups=spec.groups)


def weights_and_reference(algo, spec, seed=0):
    """The weights ``algo`` takes for ``spec`` and the float64 result it must match."""
    x, w = random_arrays(spec, seed)
    if algo.operator == "separable":
        ws = separable_weights(spec, seed=seed + 1)
        return x, ws, reference(spec, x, composed_weight(*ws))
    return x, w, reference(spec, x, w)


def compute(algo, spec, x, w):
    out = np.full(spec.output_shape, np.nan, dtype=spec.dtype)
    algo.prepare(w, spec)(x, out)
    return out


def check(algo, spec, seed=0):
    x, w, ref = weights_and_reference(algo, spec, seed)
    out = compute(algo, spec, x, w)
    assert out.dtype == spec.dtype and out.shape == ref.shape
    assert np.isfinite(out).all(), "the kernel left elements unwritten (NaN) or overflowed"
    err = relative_error(out, ref, x, w if algo.operator != "separable" else None)
    assert err <= algo.tolerance[spec.dtype], f"{algo.name} on {spec.id}: error {err:.3g}"


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("algo", ALGOS, ids=lambda a: a.name)
def test_named_case(algo, case):
    spec = CASES[case]
    reason = algo.supports(spec)
    if reason is None:
        check(algo, spec)
    else:
        assert isinstance(reason, str) and reason.strip()


@pytest.mark.parametrize("algo", ALGOS, ids=lambda a: a.name)
def test_each_algorithm_computes_many_cases(algo):
    supported = [c for c, spec in CASES.items() if algo.supports(spec) is None]
    assert len(supported) >= 5, f"{algo.name} supports only {supported}"


@pytest.mark.parametrize(
    ("name", "spec_kw", "expected"),
    [
        ("winograd_f23", dict(c=2, h=9, k=2, r=5), "3x3"),
        ("winograd_f43", dict(c=2, h=9, k=2, r=3, stride=2), "stride"),
        ("winograd_f43", dict(c=2, h=9, k=2, r=3, dilation=2), "dilation"),
        ("winograd_f63", dict(c=2, h=9, k=2, r=5, padding=2), "3x3"),
        ("depthwise", dict(c=4, h=9, k=4, r=3), "groups"),
        ("separable", dict(c=4, h=9, k=4, r=3, groups=2), "groups"),
    ],
)
def test_unsupported_problems_give_reasons(name, spec_kw, expected):
    from convbench.spec import ConvSpec

    reason = registry.get(name).supports(ConvSpec(**spec_kw))
    assert reason is not None and expected in reason


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=problems())
def test_random_problems(spec):
    ran = 0
    for algo in ALGOS:
        if algo.supports(spec) is None:
            check(algo, spec, seed=spec.h * 31 + spec.w)
            ran += 1
    assert ran >= 2  # direct and im2col support everything


WORKSPACE_LAYERS = [
    ConvSpec(c=64, h=56, k=64, r=3, padding=1),
    ConvSpec(c=256, h=14, k=256, r=3, padding=1),
    ConvSpec(c=3, h=64, k=16, r=7, stride=2, padding=3),
    ConvSpec(c=16, h=48, k=16, r=15, padding="same"),
    ConvSpec(c=32, h=28, k=32, r=3, groups=32, padding=1),
    *CASES.values(),
]


# PyTorch allocates with its own allocator, which tracemalloc does not see: the torch
# baseline's estimate has nothing to be checked against.
@pytest.mark.parametrize("algo", [a for a in ALGOS if a.name != "torch"], ids=lambda a: a.name)
def test_workspace_estimate_bounds_what_is_allocated(algo):
    """The estimate used to skip problems over the memory budget is an upper bound of the
    bytes measured (tracemalloc) during a prepare and a call, and not a wild one."""
    from convbench.runner import _workspace

    for spec in WORKSPACE_LAYERS:
        if algo.supports(spec) is not None:
            continue
        x, w, _ = weights_and_reference(algo, spec)
        out = np.empty(spec.output_shape, spec.dtype)
        algo.prepare(w, spec)(x, out)  # compile outside the measurement
        measured = _workspace(lambda w=w, spec=spec: algo.prepare(w, spec), (x, out))
        estimate = algo.workspace(spec)
        assert measured <= estimate + (64 << 10), f"{spec.id}: {measured} > {estimate}"
        assert estimate <= 4 * measured + (1 << 20), f"{spec.id}: {estimate} >> {measured}"


PHASE_NAMES = {"pad", "pack", "input transform", "multiply", "output transform", "depthwise",
               "pointwise"}


@pytest.mark.parametrize("algo", ALGOS, ids=lambda a: a.name)
def test_phases_use_the_vocabulary_and_run_alone(algo):
    """A kernel's phases are named from one vocabulary, one of them does the products, and
    running any phase again alone (as the harness does to time it) leaves the result as it
    was."""
    for spec in (CASES["tail channels"], CASES["stride 2 pad 1"]):
        if algo.supports(spec) is not None:
            continue
        x, w, ref = weights_and_reference(algo, spec)
        compute = algo.prepare(w, spec)
        out = np.full(spec.output_shape, np.nan, dtype=spec.dtype)
        compute(x, out)
        first = out.copy()
        named = [name for name, _ in getattr(compute, "phases", ())]
        assert set(named) <= PHASE_NAMES, named
        if named:
            assert len(set(named)) == len(named)
            assert "multiply" in named or named == ["depthwise", "pointwise"]
        for _, phase in getattr(compute, "phases", ()):
            phase(x, out)
            np.testing.assert_array_equal(out, first)
