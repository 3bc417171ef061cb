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
NAMED = ("tail channels", "stride (2,3)", "1x1 pointwise", "float64")


@pytest.mark.parametrize(("family", "params"), SPACE,
                         ids=[f"{f}-{'-'.join(f'{k}{v}' for k, v in p.items())}"
                              for f, p in SPACE])
def test_every_candidate_matches_the_reference(family, params):
    module = registry.tunable_families()[family]
    entry = next(a for a in registry.algorithms("cpu") if a.name == family)
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
        assert np.isfinite(out).all() and err <= entry.tolerance[spec.dtype], (case, err)
