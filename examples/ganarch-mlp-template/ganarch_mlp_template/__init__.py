"""A second architecture family for ganarch: the vanilla MLP GAN (Goodfellow et al. 2014).

G is a stack of fully connected hidden layers and a dense projection to the image; D is a
stack of fully connected hidden layers and a dense head. Every layer is a block registered
with ganarch (``dense``, a ``project`` block, a ``head`` block, norms, activations, wraps),
so a block a plugin adds is a valid choice here too, and ``ganarch search`` can search the
family with nothing in ganarch knowing it: the space file ``mlp.toml`` next to this module
says ``template = "mlp"``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

import ganarch
from ganarch import GANSpec, LayerSpec, SpecError

__all__ = ["DEFAULTS", "SPACE", "ganarch_register_templates", "mlp_spec"]

#: Every choice with its default: two hidden layers each side, ReLU in G, LeakyReLU in D.
DEFAULTS: dict[str, Any] = {
    "g_layers": 2,  # fully connected hidden layers in G
    "d_layers": 2,  # ... and in D
    "g_activation": "relu",
    "d_activation": "leaky_relu",
    "g_norm": "none",  # a norm after each hidden layer (batchnorm, layernorm, ...)
    "d_norm": "none",
    "g_output_activation": "tanh",
    "d_output_activation": "sigmoid",  # folded into the loss when training
    "g_project": "project_dense",  # last hidden vector -> the image
    "d_head": "head_dense",
    "d_wrap": "none",  # e.g. spectral_norm on every D layer
}
BLOCK_CHOICES = {
    "g_activation": "activation",
    "d_activation": "activation",
    "g_norm": "norm",
    "d_norm": "norm",
    "g_output_activation": "activation",
    "d_output_activation": "activation",
    "g_project": "project",
    "d_head": "head",
    "d_wrap": "wrap",
}
OPTIONAL = ("g_norm", "d_norm", "g_output_activation", "d_output_activation", "d_wrap")
#: The most hidden layers a side may have (a spec is a list; keep it small).
MAX_LAYERS = 8
#: The search space shipped with the template (``ganarch search --space <this path>``).
SPACE = Path(str(files(__name__) / "mlp.toml"))


def mlp_spec(
    image_size: int = 32,
    channels: int = 1,
    latent_dim: int = 64,
    width: int = 256,
    **choices: Any,
) -> GANSpec:
    """A vanilla MLP GAN: fully connected G and D of ``width`` hidden features each.

    Example::

        spec = mlp_spec(16, channels=1, width=128, g_layers=1, d_wrap="spectral_norm")
        G, D = spec.build()
    """
    params = {
        k: dict(choices.pop(k) or {})
        for k in ("g_activation_params", "d_activation_params")
        if k in choices
    }
    for key in choices:
        if key not in DEFAULTS:
            raise SpecError(key, f"not a choice of the mlp template; valid: {', '.join(DEFAULTS)}")
    c = {**DEFAULTS, **choices}
    for key in ("g_layers", "d_layers"):
        v = c[key]
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_LAYERS:
            raise SpecError(key, f"must be an integer from 0 to {MAX_LAYERS}, got {v!r}")

    def maybe(
        block: str, p: dict[str, Any] | None = None, wrap: tuple[str, ...] = ()
    ) -> list[LayerSpec]:
        return [] if block in ("none", None) else [LayerSpec(block, p or {}, wrap)]

    d_wrap = () if c["d_wrap"] in ("none", None) else (c["d_wrap"],)
    g: list[LayerSpec] = []
    for _ in range(c["g_layers"]):
        g.append(LayerSpec("dense", {"features": width}))
        g += maybe(c["g_norm"])
        g += maybe(c["g_activation"], params.get("g_activation_params"))
    g.append(LayerSpec(c["g_project"], {"out_channels": channels, "size": image_size}))
    g += maybe(c["g_output_activation"])

    d: list[LayerSpec] = []
    for _ in range(c["d_layers"]):
        d.append(LayerSpec("dense", {"features": width}, d_wrap))
        d += maybe(c["d_norm"])
        d += maybe(c["d_activation"], params.get("d_activation_params"))
    d.append(LayerSpec(c["d_head"], {}, d_wrap))
    d += maybe(c["d_output_activation"])

    return GANSpec(
        image_size=image_size,
        channels=channels,
        latent_dim=latent_dim,
        generator=tuple(g),
        discriminator=tuple(d),
        meta={"template": "mlp", "width": width, "choices": {**c, **params}},
    )


@ganarch.hookimpl
def ganarch_register_templates(registrar) -> None:
    registrar.add(
        "mlp",
        build=mlp_spec,
        defaults=DEFAULTS,
        block_choices=BLOCK_CHOICES,
        optional=OPTIONAL,
        param_choices=("g_activation", "d_activation"),
        # a norm after hidden layers only matters when there are hidden layers
        requires={"g_norm": ("g_layers",), "d_norm": ("d_layers",)},
        description="Vanilla MLP GAN (Goodfellow et al. 2014): fully connected G and D",
    )
