"""The built networks: ``Generator`` and ``Discriminator`` modules assembled from a planned
spec, the paper's weight initialisation, and the guard that keeps in-place activations safe.

``ganarch.builder`` plans a spec (checks every layer, infers every shape) and calls this module
to make the modules; keeping torch's modules here lets a spec be made and checked against the
block registry without importing torch until a shape is probed or a network built.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import islice
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ganarch.errors import SpecError
from ganarch.registry import BlockInfo, Shape

if TYPE_CHECKING:  # the plans are the builder's; this module receives them
    from ganarch.builder import NetPlan, SpecPlan

__all__ = [
    "Discriminator",
    "Generator",
    "Network",
    "build_networks",
    "init_weights",
    "make_module",
]


def make_module(
    block: BlockInfo, in_shape: Shape, params: Mapping[str, Any], wrap, where: str
) -> nn.Module:
    """``block``'s module for ``in_shape`` and ``params``, wrapped by ``wrap`` in order; a
    factory that rejects its params, or returns no module, is a ``SpecError`` at ``where``."""
    try:
        module = block.factory(in_shape, **params)
        for w in wrap:
            module = w.factory(module)
    except (TypeError, ValueError) as exc:
        raise SpecError(
            f"{where}.params", f"block {block.name!r} rejected its params: {exc}"
        ) from exc
    if not isinstance(module, nn.Module):
        raise SpecError(
            where, f"block {block.name!r} returned {type(module).__name__}, not an nn.Module"
        )
    return module


class Network(nn.Module):
    """A built network: its layers in order, as an ``nn.Sequential`` named ``layers``."""

    def __init__(self, layers: list[nn.Module], plan: NetPlan) -> None:
        super().__init__()
        self.layers = nn.Sequential(*layers)
        self.plan = plan


class Generator(Network):
    """Maps ``(N, latent_dim)`` or ``(N, latent_dim, 1, 1)`` noise to ``(N, C, H, W)`` images."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]
        return self.layers(z)


class Discriminator(Network):
    """Maps ``(N, C, H, W)`` images to ``(N,)`` scores; ``logits()`` skips a final sigmoid."""

    def __init__(self, layers: list[nn.Module], plan: NetPlan) -> None:
        super().__init__(layers, plan)
        last = plan.layers[-1].block
        self.ends_in_sigmoid = last.folds_into_loss
        # How many leading layers ``logits`` runs. A count, not a slice or module list: slicing
        # ``self.layers`` builds a new Sequential per call, and a stored module list would
        # register the layers twice (state_dict keys, parameter counts).
        self._n_logit_layers = len(layers) - 1 if self.ends_in_sigmoid else len(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).reshape(x.shape[0])

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid scores when D ends in a sigmoid (else the same as ``forward``)."""
        if not self.ends_in_sigmoid:
            return self.forward(x)
        h = x
        for layer in islice(self.layers, self._n_logit_layers):
            h = layer(h)
        return h.reshape(x.shape[0])


_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
_WEIGHTED = (nn.modules.conv._ConvNd, nn.Linear)


def init_weights(module: nn.Module, std: float) -> None:
    """The paper's initialisation: conv and dense weights ~ N(0, std), norm scales ~ N(1, std),
    biases zero."""
    for m in module.modules():
        if isinstance(m, _NORMS) and getattr(m, "weight", None) is not None:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
        elif isinstance(m, _WEIGHTED):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _build_net(net: NetPlan, cls: type[Network], init_std: float | None) -> Network:
    layers = []
    for layer in net.layers:
        module = make_module(layer.block, layer.in_shape, layer.params, (), layer.where)
        if init_std is not None:
            init_weights(module, init_std)
        for w in layer.wrap:  # wrap after init, so e.g. spectral norm sees the drawn weights
            module = w.factory(module)
        _guard_inplace(module, layers[-1] if layers else None)
        layers.append(module)
    return cls(layers, net)


def _guard_inplace(module: nn.Module, previous: nn.Module | None) -> None:
    """Turn off ``inplace`` where it would break the backward pass, so a spec that validates
    trains: an in-place layer overwrites its input, which is safe only when the layer before
    is a conv, dense or norm layer (their gradients do not need their output). After another
    activation (two in a row), or on the network's input, it is not.

    Nested layers count too (a plugin's ``Sequential(..., ReLU(inplace=True))``): inside
    ``nn.Sequential`` the layer before is the one registered before; inside any other module
    the order its ``forward`` runs them in is unknown, so in-place is turned off there. The
    modules a parametrization adds (spectral norm's) are not layers of their own."""
    before = _layers(previous)[-1:] if previous is not None else []
    chain = before + _layers(module)
    for i in range(len(before), len(chain)):
        leaf, ordered = chain[i]
        if not getattr(leaf, "inplace", False):
            continue
        prev, prev_ordered = chain[i - 1] if i > 0 else (None, False)
        if not (ordered and prev_ordered and isinstance(prev, _WEIGHTED + _NORMS)):
            leaf.inplace = False


def _layers(module: nn.Module) -> list[tuple[nn.Module, bool]]:
    """``module``'s leaf layers in registration order, each with whether that is the order
    they run in (every container above it is a ``Sequential``), parametrizations left out."""
    out: list[tuple[nn.Module, bool]] = []

    def walk(m: nn.Module, ordered: bool) -> None:
        children = [
            c
            for name, c in m.named_children()
            if not (name == "parametrizations" and isinstance(c, nn.ModuleDict))
        ]
        if not children:
            out.append((m, ordered))
            return
        for c in children:
            walk(c, ordered and isinstance(m, nn.Sequential))

    walk(module, True)
    return out


def build_networks(p: SpecPlan, init_std: float | None) -> tuple[Generator, Discriminator]:
    """``(generator, discriminator)`` for a planned spec; weights ~ N(0, ``init_std``) as the
    paper draws them, or PyTorch's defaults with ``None``."""
    return _build_net(p.generator, Generator, init_std), _build_net(
        p.discriminator, Discriminator, init_std
    )
