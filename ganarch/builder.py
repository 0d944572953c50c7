"""The builder: checks a spec's layers against the block registry and builds its networks.

:class:`GANSpec` is the public spec: the data of ``ganarch.spec`` (which knows nothing of
blocks) plus ``validate()`` and ``build()``; ``GANSpec.from_dict`` and :func:`load_spec`
validate. ``plan(spec)`` infers every layer's shapes and parameter count without allocating
weights (parameters are counted on PyTorch's ``meta`` device); ``build(spec)`` makes the
modules (``ganarch.networks``). The builder never names a concrete block: each block's kind
and shape rule say everything. Importing it imports no torch: planning and building do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ganarch._lazy import lazy_getattr
from ganarch.errors import SpecError
from ganarch.registry import BlockInfo, ParamError, Shape, get_block
from ganarch.spec import LayerSpec, SpecData, check_plan_sizes, check_sizes, read_data_file

if TYPE_CHECKING:
    from ganarch.networks import Discriminator, Generator

__all__ = [
    "GANSpec",
    "LayerPlan",
    "NetPlan",
    "SpecPlan",
    "build",
    "load_spec",
    "plan",
]

# The built modules live in ganarch.networks (torch); these names stay importable from here.
__getattr__ = lazy_getattr(
    __name__,
    globals(),
    {
        name: "ganarch.networks"
        for name in ("Network", "Generator", "Discriminator", "init_weights", "_guard_inplace")
    },
)


class GANSpec(SpecData):
    """A GAN as data that the builder can check and build: ``GANSpec.from_dict(d)``,
    ``spec.to_dict()``, ``spec.save(path)``, ``spec.validate()``,
    ``spec.build() -> (generator, discriminator)``.

    Example::

        spec = ganarch.dcgan_spec(image_size=32, channels=1)
        G, D = spec.build()
        images = G(torch.randn(8, spec.latent_dim))   # (8, 1, 32, 32)
        scores = D(images)                            # (8,)
    """

    @classmethod
    def from_dict(cls, d: Any, validate: bool = True) -> GANSpec:
        """Read a spec from plain data; with ``validate`` the layers are checked against the
        registered blocks and every shape is inferred (raises ``SpecError``)."""
        spec = super().from_dict(d)
        if validate:
            spec.validate()
        return spec

    def validate(self) -> None:
        """Check every layer against the registered blocks and infer all shapes."""
        plan(self)

    def build(self, init: bool = True) -> tuple[Generator, Discriminator]:
        """Build ``(generator, discriminator)`` as ``torch.nn.Module``s.

        With ``init`` the weights are drawn as the paper does (N(0, init_std) for conv and
        dense weights, N(1, init_std) for norm scales); otherwise PyTorch's defaults stay.
        """
        return build(self, init=init)


def load_spec(path: str | Path) -> GANSpec:
    """Load and validate a spec from a JSON, TOML or YAML file."""
    return GANSpec.from_dict(read_data_file(path))


@dataclass(frozen=True)
class LayerPlan:
    """One layer with everything known before building it."""

    index: int
    block: BlockInfo
    params: Mapping[str, Any]
    wrap: tuple[BlockInfo, ...]
    in_shape: Shape
    out_shape: Shape
    n_params: int
    where: str


@dataclass(frozen=True)
class NetPlan:
    name: str
    layers: tuple[LayerPlan, ...]
    in_shape: Shape
    out_shape: Shape

    @property
    def n_params(self) -> int:
        return sum(layer.n_params for layer in self.layers)


@dataclass(frozen=True)
class SpecPlan:
    generator: NetPlan
    discriminator: NetPlan


def _plan_net(name: str, layers: tuple[LayerSpec, ...], in_shape: Shape) -> NetPlan:
    import torch

    from ganarch.networks import make_module

    planned: list[LayerPlan] = []
    shape = in_shape
    for i, layer in enumerate(layers):
        where = f"{name}.layers[{i}]"
        block = get_block(layer.block, f"{where}.block")
        if block.kind == "wrap":  # the built-in kind (plugins/blocks.py) applied to weights
            raise SpecError(
                f"{where}.block",
                f"{layer.block!r} is a wrap block; name it in a layer's 'wrap' list",
            )
        block.check_params(layer.params, f"{where}.params")
        wrap = tuple(
            get_block(w, f"{where}.wrap[{j}]", kind="wrap") for j, w in enumerate(layer.wrap)
        )
        try:
            out = block.out_shape(shape, layer.params)
        except ParamError as exc:
            raise SpecError(f"{where}.params.{exc.param}", str(exc)) from exc
        except (TypeError, ValueError) as exc:
            raise SpecError(
                where, f"block {block.name!r} cannot take input {shape}: {exc}"
            ) from exc
        with torch.device("meta"):
            module = make_module(block, shape, layer.params, wrap, where)
            probe = torch.empty(2, *shape)
            try:
                got = tuple(module(probe).shape[1:])
            except Exception as exc:  # the module's own complaint is the clearest message
                raise SpecError(
                    where, f"block {block.name!r} fails on input {shape}: {exc}"
                ) from exc
        if got != tuple(out):
            raise SpecError(
                where,
                f"block {block.name!r} declares output {out} but produces {Shape(*got)} "
                "(its shape rule is wrong)",
            )
        n_params = sum(p.numel() for p in module.parameters())
        planned.append(LayerPlan(i, block, dict(layer.params), wrap, shape, out, n_params, where))
        shape = out
    return NetPlan(name, tuple(planned), in_shape, shape)


def plan(spec: SpecData) -> SpecPlan:
    """Check ``spec`` against the registry and infer every layer's shapes and parameter count."""
    check_sizes(spec)  # limits first: a billion layers or channels never reach the registry
    g = _plan_net("generator", spec.generator, Shape(spec.latent_dim, 1, 1))
    image = Shape(spec.channels, spec.image_size, spec.image_size)
    if g.out_shape != image:
        raise SpecError(
            f"generator.layers[{len(spec.generator) - 1}]",
            f"the generator ends at {g.out_shape}, but images are {image}",
        )
    d = _plan_net("discriminator", spec.discriminator, image)
    if d.out_shape != Shape(1, 1, 1):
        raise SpecError(
            f"discriminator.layers[{len(spec.discriminator) - 1}]",
            f"the discriminator must end in one score per image (a 'head' block), got {d.out_shape}",
        )
    check_plan_sizes(
        spec,
        g.n_params + d.n_params,
        [layer.out_shape for layer in g.layers],
        [layer.out_shape for layer in d.layers],
    )
    return SpecPlan(g, d)


def build(spec: SpecData, init: bool = True) -> tuple[Generator, Discriminator]:
    """Build ``(generator, discriminator)`` for ``spec`` (see ``GANSpec.build``)."""
    from ganarch.networks import build_networks

    return build_networks(plan(spec), spec.training.init_std if init else None)
