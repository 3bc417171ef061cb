"""Every parameter set a tuner may choose computes exactly: each tunable family, over its whole
search space on this machine's target, against the float64 reference."""

import numpy as np
import pytest

from convbench import registry
from tests.cases import CASES, random_arrays
from tests.kernels.test_algorithms import reference, relative_error

TARGET = registry.cpu_target()
SPACE = [(name, params) for name, module in registry.tunable_families().items()
         for params in module.space(TARGET)]
NAMED = ("tail channels", "stride (2,3)", "1x1 pointwise", "float64", "depthwise",
         "depthwise multiplier 2", "depthwise stride 2 dilation 2", "float64 depthwise")


@pytest.mark.parametrize(("family", "params"), SPACE,
                         ids=[f"{f}-{'-'.join(f'{k}{v}' for k, v in p.items())}"
                              for f, p in SPACE])
def test_every_candidate_matches_the_reference(family, params):
    module = registry.tunable_families()[family]
    tolerance = max_tolerance(module)
    for case in NAMED:
        spec = CASES[case]
        if module.supports(spec) is not None:
            continue
        x, w = random_arrays(spec)
        out = np.full(spec.output_shape, np.nan, dtype=spec.dtype)
        compute = module.prepare(w, spec, params)
        compute(x, out)
        # the parameters the layer runs (a family may adapt them to the problem: direct
        # narrows its tile on small images)
        assert set(compute.params) == set(module.defaults(TARGET))
        err = relative_error(out, reference(spec, x, w))
        assert np.isfinite(out).all() and err <= tolerance[spec.dtype], (case, err)


def max_tolerance(module) -> dict:
    """The loosest tolerance of the registry entries a family module prepares."""
    def forward(prepare):  # the family's own prepare behind partials and the directions' form
        prepare = getattr(prepare, "forward", prepare)
        return getattr(prepare, "func", prepare)

    entries = [a for a in registry.algorithms("cpu")
               if forward(a.prepare).__module__ == module.__name__]
    return {d: max(a.tolerance[d] for a in entries) for d in ("float32", "float64")}


@pytest.mark.parametrize("case", ["tail channels", "stride (2,3)", "float64"])
@pytest.mark.parametrize("small_image", [1, 10 ** 6], ids=["by-pixels", "by-channels"])
def test_im2col_blocks_of_a_tiny_budget(case, small_image):
    """Column blocks of one output row (a budget smaller than a row), both strategies."""
    module = registry.tunable_families()["im2col"]
    spec = CASES[case]
    x, w = random_arrays(spec)
    out = np.full(spec.output_shape, np.nan, dtype=spec.dtype)
    module.prepare(w, spec, {"col_budget": 1, "small_image": small_image})(x, out)
    assert relative_error(out, reference(spec, x, w)) <= max_tolerance(module)[spec.dtype]


@pytest.mark.parametrize("chunk_bytes", [1, 600])
@pytest.mark.parametrize("case", ["tail channels", "wide channels", "1x1 pointwise",
                                  "groups 4 stride 2", "batch 3", "float64"])
def test_direct_in_channel_chunks(case, chunk_bytes):
    """Partial sums carried between chunks of one channel, and of a few."""
    module = registry.tunable_families()["direct"]
    spec = CASES[case]
    x, w = random_arrays(spec)
    out = np.full(spec.output_shape, np.nan, dtype=spec.dtype)
    module.prepare(w, spec, {"chunk_bytes": chunk_bytes})(x, out)
    assert relative_error(out, reference(spec, x, w)) <= max_tolerance(module)[spec.dtype]
