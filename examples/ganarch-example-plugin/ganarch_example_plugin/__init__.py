"""An example ganarch plugin: two blocks, registered through the ``ganarch`` entry point.

Once installed, ``mish`` is a valid ``g_activation``/``d_activation`` and ``reflect_conv_up``
a valid ``g_upsample`` for ``ganarch.dcgan_spec``, and both are searchable choices.
"""

from __future__ import annotations

from torch import nn

import ganarch

__version__ = "0.1.0"


def mish(in_shape: ganarch.Shape) -> nn.Module:
    """Mish, x * tanh(softplus(x)): a smooth, non-monotonic activation (Misra 2019)."""
    return nn.Mish()


def reflect_conv_up(
    in_shape: ganarch.Shape, out_channels: int, kernel_size: int = 3, bias: bool = False
) -> nn.Module:
    """Nearest-exact ×2 upsampling, then a same-size convolution with reflection padding."""
    if kernel_size % 2 == 0:
        # ValueError from a factory becomes a SpecError naming the layer's params.
        raise ValueError(f"kernel_size must be odd, got {kernel_size}")
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest-exact"),
        nn.ReflectionPad2d(kernel_size // 2),
        nn.Conv2d(in_shape.channels, out_channels, kernel_size, bias=bias),
    )


@ganarch.hookimpl
def ganarch_register_blocks(registrar) -> None:
    """Called once by ganarch; the kind gives each block its shape rule."""
    registrar.add("mish", kind="activation", factory=mish)
    registrar.add("reflect_conv_up", kind="upsample", factory=reflect_conv_up)
