"""A fake registry for harness tests: kernels that work, raise, refuse, or lie."""

import time

from convbench.registry import Algorithm
from kernels.reference import reference_conv2d

TOL = {"float32": 1e-5, "float64": 1e-12}


def _exact(w, spec, delay=0.0):
    def compute(x, out):
        if delay:
            time.sleep(delay)
        out[...] = reference_conv2d(x, w, stride=(spec.sh, spec.sw), pads=spec.pads,
                                    dilation=(spec.dh, spec.dw), groups=spec.groups)
    return compute


def _raises(w, spec):
    raise RuntimeError("kernel exploded\nsecond line of the message")


def _zeros(w, spec):
    def compute(x, out):
        out[...] = 0
    return compute


def _off(w, spec):
    exact = _exact(w, spec)

    def compute(x, out):
        exact(x, out)
        out *= 1.01
    return compute


def entries(delay: float = 0.0):
    return [
        Algorithm("good", "fake", "cpu", lambda s: None,
                  lambda w, s: _exact(w, s, delay), TOL, "exact"),
        Algorithm("picky", "fake", "cpu", lambda s: None if s.r == 1 else "only 1x1 filters",
                  lambda w, s: _exact(w, s), TOL, "1x1 only"),
        Algorithm("raises", "fake", "cpu", lambda s: None, _raises, TOL, "always fails"),
        Algorithm("zeros", "fake", "cpu", lambda s: None, _zeros, TOL, "writes zeros"),
        Algorithm("off", "fake", "cpu", lambda s: None, _off, TOL, "1% off"),
        Algorithm("hungry", "fake", "cpu", lambda s: None, lambda w, s: _exact(w, s), TOL,
                  "asks for too much memory", workspace=lambda s: 1 << 50),
        Algorithm("gpu", "fake", "cuda", lambda s: None, lambda w, s: _exact(w, s), TOL,
                  "needs a GPU"),
    ]
