"""Built-in block kinds and blocks: the layers of the DCGAN family and the alternatives the
paper weighed.

Every factory takes the input shape first and keyword parameters after; convolutions
default to ``bias=False`` as in the paper (a following norm makes a bias redundant).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from torch import nn

from ganarch.plugin import hookimpl
from ganarch.registry import ParamError, Shape

# --- the built-in kinds' shape rules ---------------------------------------------------------


def _needs(params: Mapping[str, Any], key: str, kind: str) -> int:
    value = params.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParamError(key, f"{kind} blocks need a positive integer {key!r}, got {value!r}")
    return value


def _keep(s: Shape, p: Mapping[str, Any]) -> Shape:
    return s


def _conv(s: Shape, p: Mapping[str, Any]) -> Shape:
    return Shape(_needs(p, "out_channels", "conv"), s.height, s.width)


def _up(s: Shape, p: Mapping[str, Any]) -> Shape:
    return Shape(_needs(p, "out_channels", "upsample"), s.height * 2, s.width * 2)


def _down(s: Shape, p: Mapping[str, Any]) -> Shape:
    if s.height % 2 or s.width % 2 or s.height < 2:
        raise ValueError(f"cannot halve a {s.height}×{s.width} feature map")
    return Shape(_needs(p, "out_channels", "downsample"), s.height // 2, s.width // 2)


def _project(s: Shape, p: Mapping[str, Any]) -> Shape:
    if (s.height, s.width) != (1, 1):
        raise ValueError(f"a project block takes a latent vector, got a {s} feature map")
    size = p.get("size", 4)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ParamError("size", f"'size' must be a positive integer, got {size!r}")
    return Shape(_needs(p, "out_channels", "project"), size, size)


def _head(s: Shape, p: Mapping[str, Any]) -> Shape:
    return Shape(1, 1, 1)


def _dense(s: Shape, p: Mapping[str, Any]) -> Shape:
    return Shape(_needs(p, "features", "dense"), 1, 1)


#: The built-in kinds, in the order listings show them: name -> (shape rule, meaning).
#: ganarch's core knows two of them by name: the builder applies ``wrap`` blocks to a
#: layer's weights, and a search over ``norm`` blocks leaves out the ``"none"`` norm unless
#: asked (``include_none``).
KINDS = {
    "conv": (_conv, "convolution that keeps the spatial size (param out_channels)"),
    "upsample": (_up, "doubles height and width (param out_channels)"),
    "downsample": (_down, "halves height and width (param out_channels)"),
    "norm": (_keep, "normalisation; keeps the shape"),
    "activation": (_keep, "elementwise nonlinearity; keeps the shape"),
    "project": (_project, "latent vector -> first feature map (params out_channels, size=4)"),
    "head": (_head, "feature map -> one score per image"),
    "dense": (_dense, "fully connected hidden layer (param features)"),
    "wrap": (_keep, "wraps a layer's weights (e.g. spectral norm); named in a layer's 'wrap'"),
}


@hookimpl
def ganarch_register_block_kinds(registrar) -> None:
    for name, (rule, meaning) in KINDS.items():
        registrar.add(name, shape=rule, description=meaning)


# --- blocks ----------------------------------------------------------------------------------


class Reshape(nn.Module):
    """Reshape a batch to ``(N, *shape)``."""

    def __init__(self, *shape: int) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x):
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return ", ".join(map(str, self.shape))


# --- upsample (x2) ---------------------------------------------------------------------------


def tconv(in_shape, out_channels: int, bias: bool = False):
    """Fractional-strided (transposed) convolution, kernel 4, stride 2 (the paper's choice)."""
    return nn.ConvTranspose2d(in_shape.channels, out_channels, 4, 2, 1, bias=bias)


def nearest_conv(in_shape, out_channels: int, kernel_size: int = 3, bias: bool = False):
    """Nearest-neighbour upsampling followed by a same-size convolution."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(in_shape.channels, out_channels, kernel_size, 1, kernel_size // 2, bias=bias),
    )


def bilinear_conv(in_shape, out_channels: int, kernel_size: int = 3, bias: bool = False):
    """Bilinear upsampling followed by a same-size convolution."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        nn.Conv2d(in_shape.channels, out_channels, kernel_size, 1, kernel_size // 2, bias=bias),
    )


def pixel_shuffle(in_shape, out_channels: int, kernel_size: int = 3, bias: bool = False):
    """Sub-pixel convolution: a convolution to 4x channels, then PixelShuffle(2)."""
    return nn.Sequential(
        nn.Conv2d(in_shape.channels, out_channels * 4, kernel_size, 1, kernel_size // 2, bias=bias),
        nn.PixelShuffle(2),
    )


# --- downsample (/2) -------------------------------------------------------------------------


def strided_conv(in_shape, out_channels: int, bias: bool = False):
    """Strided convolution, kernel 4, stride 2 (the paper's choice)."""
    return nn.Conv2d(in_shape.channels, out_channels, 4, 2, 1, bias=bias)


def conv_maxpool(in_shape, out_channels: int, kernel_size: int = 3, bias: bool = False):
    """Same-size convolution followed by 2x2 max pooling."""
    return nn.Sequential(
        nn.Conv2d(in_shape.channels, out_channels, kernel_size, 1, kernel_size // 2, bias=bias),
        nn.MaxPool2d(2),
    )


def conv_avgpool(in_shape, out_channels: int, kernel_size: int = 3, bias: bool = False):
    """Same-size convolution followed by 2x2 average pooling."""
    return nn.Sequential(
        nn.Conv2d(in_shape.channels, out_channels, kernel_size, 1, kernel_size // 2, bias=bias),
        nn.AvgPool2d(2),
    )


# --- conv (same size) ------------------------------------------------------------------------


def conv(in_shape, out_channels: int, kernel_size: int = 3, bias: bool = False):
    """Convolution that keeps the spatial size (odd kernel, 'same' padding)."""
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd to keep the spatial size, got {kernel_size}")
    return nn.Conv2d(in_shape.channels, out_channels, kernel_size, 1, kernel_size // 2, bias=bias)


# --- norm ------------------------------------------------------------------------------------


def batchnorm(in_shape, momentum: float = 0.1, eps: float = 1e-5):
    """Batch normalisation over (N, H, W) per channel."""
    return nn.BatchNorm2d(in_shape.channels, eps=eps, momentum=momentum)


def instancenorm(in_shape, affine: bool = True, eps: float = 1e-5):
    """Instance normalisation over (H, W) per sample and channel."""
    return nn.InstanceNorm2d(in_shape.channels, affine=affine, eps=eps)


def layernorm(in_shape, eps: float = 1e-5):
    """Layer normalisation over (C, H, W) per sample (GroupNorm with one group)."""
    return nn.GroupNorm(1, in_shape.channels, eps=eps)


def groupnorm(in_shape, groups: int = 8, eps: float = 1e-5):
    """Group normalisation; uses the largest divisor of the channels not above ``groups``."""
    g = max(d for d in range(1, min(groups, in_shape.channels) + 1) if in_shape.channels % d == 0)
    return nn.GroupNorm(g, in_shape.channels, eps=eps)


def no_norm(in_shape):
    """No normalisation (identity)."""
    return nn.Identity()


def spectral_norm(module, n_power_iterations: int = 1):
    """Spectral normalisation of every conv and linear weight inside the layer."""
    targets = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
    for sub in list(module.modules()):
        if isinstance(sub, targets):
            nn.utils.parametrizations.spectral_norm(sub, n_power_iterations=n_power_iterations)
    return module


# --- activation ------------------------------------------------------------------------------


def relu(in_shape):
    """ReLU (the paper's choice in G)."""
    return nn.ReLU(inplace=True)


def leaky_relu(in_shape, slope: float = 0.2):
    """LeakyReLU with negative slope ``slope`` (the paper: 0.2 in D)."""
    return nn.LeakyReLU(slope, inplace=True)


def elu(in_shape, alpha: float = 1.0):
    """ELU."""
    return nn.ELU(alpha, inplace=True)


def silu(in_shape):
    """SiLU (swish)."""
    return nn.SiLU(inplace=True)


def gelu(in_shape):
    """GELU."""
    return nn.GELU()


def tanh(in_shape):
    """Tanh (the paper's G output)."""
    return nn.Tanh()


def sigmoid(in_shape):
    """Sigmoid; as D's last layer a logits-based loss folds it in."""
    return nn.Sigmoid()


def identity(in_shape):
    """Identity (no activation)."""
    return nn.Identity()


# --- project / head / dense ------------------------------------------------------------------


def project_tconv(in_shape, out_channels: int, size: int = 4, bias: bool = False):
    """Latent vector -> size x size map by a transposed convolution (the paper's G input)."""
    return nn.ConvTranspose2d(in_shape.channels, out_channels, size, 1, 0, bias=bias)


def project_dense(in_shape, out_channels: int, size: int = 4, bias: bool = False):
    """Latent vector -> size x size map by a dense layer and a reshape."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_shape.channels, out_channels * size * size, bias=bias),
        Reshape(out_channels, size, size),
    )


def head_conv(in_shape, bias: bool = False):
    """One score per image by a valid convolution over the whole map (4x4 in the paper)."""
    if in_shape.height != in_shape.width:
        raise ValueError(f"head_conv needs a square map, got {in_shape}")
    return nn.Conv2d(in_shape.channels, 1, in_shape.height, 1, 0, bias=bias)


def head_dense(in_shape, bias: bool = True):
    """One score per image by flattening and a dense layer."""
    n = in_shape.channels * in_shape.height * in_shape.width
    return nn.Sequential(nn.Flatten(), nn.Linear(n, 1, bias=bias), Reshape(1, 1, 1))


def dense(in_shape, features: int, bias: bool = True):
    """Fully connected hidden layer (flattens its input); output is (features, 1, 1)."""
    n = in_shape.channels * math.prod(in_shape[1:])
    return nn.Sequential(nn.Flatten(), nn.Linear(n, features, bias=bias), Reshape(features, 1, 1))


_BLOCKS = {
    "upsample": [tconv, nearest_conv, bilinear_conv, pixel_shuffle],
    "downsample": [strided_conv, conv_maxpool, conv_avgpool],
    "conv": [conv],
    "norm": [batchnorm, instancenorm, layernorm, groupnorm],
    "activation": [relu, leaky_relu, elu, silu, gelu, tanh, identity],
    "project": [project_tconv, project_dense],
    "head": [head_conv, head_dense],
    "dense": [dense],
    "wrap": [spectral_norm],
}


@hookimpl
def ganarch_register_blocks(registrar) -> None:
    for kind, factories in _BLOCKS.items():
        for factory in factories:
            registrar.add(factory.__name__, kind=kind, factory=factory)
    registrar.add("none", kind="norm", factory=no_norm)
    registrar.add("sigmoid", kind="activation", factory=sigmoid, folds_into_loss=True)
