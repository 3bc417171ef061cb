"""convbench: which convolution algorithm is fastest for a layer, how accurate is it,
and where does the winner change?

Public API: `ConvSpec`, `algorithms`, `conv2d`, its gradients `conv2d_input` and
`conv2d_weight`, `conv_transpose2d`, `separable_conv2d`, `reference_conv2d`,
`run_sweep`, `load_run`, `last_choice` (what ``conv2d(..., algo="auto")`` ran and why), `plan`
(the algorithm ``auto`` picks per layer of a network), and for users' own kernels `Algorithm`,
`register`, `unregister`.
"""

from .api import (
    algorithms,
    conv2d,
    conv2d_input,
    conv2d_weight,
    conv_transpose2d,
    reference_conv2d,
    separable_conv2d,
)
from .choices import last_choice
from .plans import plan
from .registry import Algorithm, register, unregister
from .runner import run_sweep
from .spec import ConvSpec
from .store import load_run

__all__ = ["Algorithm", "ConvSpec", "algorithms", "conv2d", "conv2d_input", "conv2d_weight",
           "conv_transpose2d", "last_choice", "load_run", "plan", "reference_conv2d", "register",
           "run_sweep", "separable_conv2d", "unregister"]
__version__ = "0.1.0"
