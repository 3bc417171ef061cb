"""Small problems that between them reach every CPU kernel path: a single tile, partial
tiles, channel tails, strides with padding, even filters with 'same', groups, dilations, large
filters.  Each has broken some convolution kernel somewhere.  The kernel tests check every
algorithm on them, and `convbench compile` compiles on them (the kernels' specialisations
depend on a problem's path, not its size, so these reach the ones a sweep runs).
"""

from .spec import ConvSpec

CASES = {
    "1x1 image": ConvSpec(c=3, h=1, k=4, r=1),
    "1x1 image, 3x3 same": ConvSpec(c=3, h=1, k=5, r=3, padding="same"),
    "one f23 tile": ConvSpec(c=4, h=4, k=4, r=3),
    "one f43 tile": ConvSpec(c=4, h=6, k=4, r=3),
    "one f63 tile": ConvSpec(c=4, h=8, k=4, r=3),
    "partial tiles": ConvSpec(c=5, h=7, w=9, k=6, r=3, padding="same"),
    "partial tiles, valid": ConvSpec(c=3, h=11, w=10, k=2, r=3),
    "tail channels": ConvSpec(c=13, h=10, k=19, r=3, padding=1),
    "wide channels": ConvSpec(c=64, h=15, k=72, r=3, padding=1),
    "1x1 pointwise": ConvSpec(c=24, h=9, w=7, k=40, r=1),
    "1x1 stride 2": ConvSpec(c=16, h=9, k=8, r=1, stride=2),
    "stride 2 pad 1": ConvSpec(c=8, h=9, k=8, r=3, stride=2, padding=1),
    "stride (2,3)": ConvSpec(c=4, h=13, w=14, k=6, r=3, s=5, stride=(2, 3), padding=(1, 2)),
    "even kernel same": ConvSpec(c=4, h=10, k=6, r=4, padding="same"),
    "even kernel same stride 2": ConvSpec(c=4, h=11, k=3, r=2, padding="same", stride=2),
    "asymmetric padding": ConvSpec(c=5, h=8, w=7, k=4, r=3, padding=(0, 2, 1, 0)),
    "1x7": ConvSpec(c=6, h=9, k=5, r=1, s=7, padding=(0, 3)),
    "7x1": ConvSpec(c=6, h=9, k=5, r=7, s=1, padding=(3, 0)),
    "5x5 valid": ConvSpec(c=3, h=12, k=7, r=5),
    "dilation 2": ConvSpec(c=4, h=12, k=4, r=3, dilation=2, padding="same"),
    "dilation (2,1) stride 2": ConvSpec(c=4, h=13, k=4, r=3, s=3, dilation=(2, 1), stride=2),
    "groups 2": ConvSpec(c=8, h=9, k=6, r=3, groups=2, padding=1),
    "groups 4 stride 2": ConvSpec(c=8, h=10, k=12, r=3, groups=4, stride=2),
    "depthwise": ConvSpec(c=6, h=9, k=6, r=3, groups=6, padding=1),
    "depthwise multiplier 2": ConvSpec(c=6, h=9, k=12, r=3, groups=6, padding=1),
    "depthwise stride 2 dilation 2": ConvSpec(c=5, h=14, k=5, r=3, groups=5, stride=2,
                                              dilation=2, padding=2),
    "batch 3": ConvSpec(n=3, c=5, h=8, k=7, r=3, padding=1),
    "batch 2, 4x4 tiles": ConvSpec(n=2, c=5, h=24, k=6, r=3, padding=1),
    # enough images, pixels and output channels for direct's channel-lane kernel (32
    # registers): its 14-pixel tile, then its 7-pixel one
    "batch 2, channel lanes": ConvSpec(n=2, c=4, h=24, k=32, r=3, padding=1),
    "batch 8, 12 wide, channel lanes": ConvSpec(n=8, c=4, h=12, k=48, r=3, padding=1),
    "depthwise 3x3 stride 2, 28x28": ConvSpec(c=3, h=28, k=3, r=3, stride=2, padding=1,
                                              groups=3),
    # TensorFlow's "same" at stride 2 on an even plane, and uneven padding on an odd one
    "depthwise 3x3 stride 2, padded top-left": ConvSpec(c=3, h=28, k=3, r=3, stride=2,
                                                        padding=(1, 0, 1, 0), groups=3),
    "depthwise 3x3 stride 2, padded 1, 0, 1, 2": ConvSpec(c=2, h=13, w=22, k=2, r=3, stride=2,
                                                         padding=(1, 0, 1, 2), groups=2),
    # depthwise's whole-plane passes: 3x3 by row pairs, and any other filter
    "depthwise 3x3 valid, 18x18": ConvSpec(c=2, h=18, k=2, r=3, groups=2),
    "depthwise 5x5, 20x20": ConvSpec(c=2, h=20, k=2, r=5, groups=2, padding=2),
    "batch 3 depthwise": ConvSpec(n=3, c=4, h=7, k=4, r=5, groups=4, padding="same"),
    # rows of several vectors and a ragged end: depthwise's 3x3 column strips of every
    # width (4, 2 and 1 vectors of 16 floats: rows of 105; 8 doubles: rows of 41), both
    # strides
    "depthwise 3x3, rows of 105": ConvSpec(n=2, c=3, h=6, w=105, k=6, r=3, groups=3,
                                           padding=1),
    "depthwise 3x3 stride 2, rows of 105": ConvSpec(c=2, h=5, w=210, k=2, r=3, stride=2,
                                                    padding=1, groups=2),
    "float64 depthwise 3x3, rows of 41": ConvSpec(c=2, h=5, w=41, k=2, r=3, groups=2,
                                                  padding=1, dtype="float64"),
    "float64": ConvSpec(n=2, c=6, h=9, k=5, r=3, padding=1, dtype="float64"),
    "float64 depthwise": ConvSpec(c=4, h=9, k=8, r=3, groups=4, dtype="float64"),
    "large filter": ConvSpec(c=3, h=20, w=17, k=4, r=11, padding="same"),
    "padding beyond the filter": ConvSpec(c=3, h=7, w=6, k=4, r=1, stride=2, padding=1),
    "2x2 stride 2 (up-convolution)": ConvSpec(c=6, h=8, w=10, k=4, r=2, stride=2),
    "4x4 stride 2 pad 1": ConvSpec(n=2, c=5, h=8, k=3, r=4, stride=2, padding=1),
}
