"""Other libraries' published results, as data, for the report to compare a run against.

`NNPACK`: the forward-propagation table of NNPACK's README (github.com/Maratyszcza/NNPACK,
README.md, "Features", in its earlier revisions, e.g. commit 04e61f9c; the current README
no longer has it): milliseconds per layer on an Intel Core i7 6700K, BVLC Caffe's im2col +
sgemm (master of March 24, 2016) against NNPACK's FFT-8x8, FFT-16x16 and Winograd
F(6x6,3x3), on the Caffe protobufs of soumith's convnet-benchmarks (AlexNet and OverFeat at
batch 128, VGG-A at 64: the protobufs' batches; the README does not state them).
``None`` where the table says N/A (Winograd F(6x6,3x3) computes 3x3 filters only).  The keys
are the layer names of the ``nnpack-table`` preset (convbench/presets/nnpack-table.toml),
which holds the layers' shapes.

`NNPACK_FAMILIES` maps NNPACK's algorithms onto convbench's families (`convbench.registry`):
im2col + sgemm is convbench's ``im2col`` (family ``gemm``), both FFT tile sizes are ``fft``,
F(6x6,3x3) is ``winograd`` (convbench's ``winograd_f23``, ``winograd_f43`` and, where
registered, ``winograd_f63``).  convbench's ``direct`` has no counterpart in the table.
"""

from __future__ import annotations

IM2COL, FFT8, FFT16, WINOGRAD = ("im2col + sgemm", "FFT-8x8", "FFT-16x16",
                                 "Winograd F(6x6,3x3)")
NNPACK_ALGORITHMS = (IM2COL, FFT8, FFT16, WINOGRAD)
NNPACK_FAMILIES = {IM2COL: "gemm", FFT8: "fft", FFT16: "fft", WINOGRAD: "winograd"}


def _ms(im2col, fft8, fft16, winograd) -> dict[str, float | None]:
    return dict(zip(NNPACK_ALGORITHMS, (im2col, fft8, fft16, winograd), strict=True))


# layer name in the preset -> (the table's row name, milliseconds per algorithm)
NNPACK: dict[str, tuple[str, dict[str, float | None]]] = {
    "nnpack:alexnet-conv2": ("AlexNet:conv2", _ms(315, 129, 86, None)),
    "nnpack:alexnet-conv3": ("AlexNet:conv3", _ms(182, 87, 44, 70)),
    "nnpack:alexnet-conv4": ("AlexNet:conv4", _ms(264, 109, 56, 89)),
    "nnpack:alexnet-conv5": ("AlexNet:conv5", _ms(177, 77, 40, 64)),
    "nnpack:vgg-a-conv1": ("VGG-A:conv1", _ms(255, 303, 260, 404)),
    "nnpack:vgg-a-conv2": ("VGG-A:conv2", _ms(902, 369, 267, 372)),
    "nnpack:vgg-a-conv3.1": ("VGG-A:conv3.1", _ms(566, 308, 185, 279)),
    "nnpack:vgg-a-conv3.2": ("VGG-A:conv3.2", _ms(1091, 517, 309, 463)),
    "nnpack:vgg-a-conv4.1": ("VGG-A:conv4.1", _ms(432, 228, 149, 188)),
    "nnpack:vgg-a-conv4.2": ("VGG-A:conv4.2", _ms(842, 402, 264, 329)),
    "nnpack:vgg-a-conv5": ("VGG-A:conv5", _ms(292, 141, 83, 114)),
    "nnpack:overfeat-conv2": ("OverFeat:conv2", _ms(424, 158, 73, None)),
    "nnpack:overfeat-conv3": ("OverFeat:conv3", _ms(250, 69, 74, 54)),
    "nnpack:overfeat-conv4": ("OverFeat:conv4", _ms(927, 256, 272, 173)),
    "nnpack:overfeat-conv5": ("OverFeat:conv5", _ms(1832, 466, 524, 315)),
}


def nnpack_winner(layer: str) -> str:
    """The fastest algorithm of the table's row for ``layer`` (a preset layer name)."""
    _, ms = NNPACK[layer]
    return min((t, a) for a, t in ms.items() if t is not None)[1]
