"""The DCGAN family (Radford et al. 2015): keyword choices map one to one onto the paper's rules.

``dcgan_spec`` lays out G and D; the constants below declare its choices as data, and the
built-in plugin (``plugins/templates.py``) registers them as the ``dcgan`` template. Any
registered block of the right kind is a valid value for a choice, so a block from a new
plugin becomes a searchable option with no change here.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ganarch.builder import GANSpec
from ganarch.errors import SpecError
from ganarch.registry import get_block
from ganarch.spec import MAX_IMAGE_SIZE, MAX_LATENT, MAX_LAYERS, LayerSpec, TrainingSpec

#: The paper's choice for every rule; ``dcgan_spec()`` with no choices builds exactly this.
PAPER_CHOICES: dict[str, Any] = {
    "g_upsample": "tconv",  # rule 2: fractional-strided convolutions in G
    "d_downsample": "strided_conv",  # rule 2: strided convolutions in D
    "g_norm": "batchnorm",  # rule 3
    "d_norm": "batchnorm",  # rule 3
    "g_output_norm": False,  # rule 4: no norm on G's output layer
    "d_input_norm": False,  # rule 4: no norm on D's input layer
    "g_activation": "relu",  # rule 5
    "g_output_activation": "tanh",  # rule 5
    "d_activation": "leaky_relu",  # rule 6 (slope 0.2 is the block's default)
    "d_output_activation": "sigmoid",  # folded into the loss when training
    "g_project": "project_tconv",  # rule 1: G's first layer may be a projection
    "d_head": "head_conv",  # rule 1: D's last layer a single output
    "g_dense_layers": 0,  # rule 1: no fully-connected hidden layers
    "d_dense_layers": 0,
    "dense_features": 1024,
    "d_wrap": "none",  # e.g. "spectral_norm" (Miyato et al. 2018; not in the paper)
    "g_wrap": "none",
}

#: Kinds whose choices may be "none" (no layer at all).
NONE_KINDS = ("norm", "wrap", "activation")
#: Choices whose value is a registered block, and the kind it must be.
CHOICE_KINDS: dict[str, str] = {
    "g_upsample": "upsample",
    "d_downsample": "downsample",
    "g_norm": "norm",
    "d_norm": "norm",
    "g_activation": "activation",
    "g_output_activation": "activation",
    "d_activation": "activation",
    "d_output_activation": "activation",
    "g_project": "project",
    "d_head": "head",
    "d_wrap": "wrap",
    "g_wrap": "wrap",
}

#: Block choices that may be "none" (no layer at all).
OPTIONAL_CHOICES = tuple(k for k, kind in CHOICE_KINDS.items() if kind in NONE_KINDS)
#: Block choices whose block takes params through ``X_params`` (e.g. the leaky ReLU's slope).
PARAM_OWNERS = ("g_activation", "d_activation")
#: Non-negative integer choices and true/false choices.
INT_CHOICES = ("g_dense_layers", "d_dense_layers", "dense_features")
BOOL_CHOICES = ("g_output_norm", "d_input_norm")
#: A choice that only matters when one of these is non-zero: the width of dense layers.
REQUIRES = {"dense_features": ("g_dense_layers", "d_dense_layers")}
#: For each claim of the paper (``ganarch.analysis.claims``), the choices (training settings
#: included) its toggle moves together: the paper's values on one level, ``ganarch ablate``'s
#: change on the other.
CLAIM_TOGGLES: dict[int, tuple[str, ...]] = {
    1: ("g_dense_layers", "d_dense_layers"),
    2: ("g_upsample", "d_downsample"),
    3: ("g_norm", "d_norm"),
    4: ("g_output_norm", "d_input_norm"),
    5: ("g_activation", "g_output_activation"),
    6: ("d_activation",),
    7: ("beta1",),
}
DESCRIPTION = "DCGAN family of Radford et al. (2015): one choice per rule of the paper"

#: Training settings among the choices (the spec's training, not its layers).
_TRAINING = frozenset(f.name for f in dataclasses.fields(TrainingSpec))


def _is_none(value: Any) -> bool:
    return value is None or value == "none"


def dcgan_spec(
    image_size: int = 64,
    channels: int = 3,
    latent_dim: int = 100,
    width: int = 64,
    **choices: Any,
) -> GANSpec:
    """The DCGAN-family spec for ``image_size`` × ``image_size`` images.

    ``width`` is D's first (and G's last hidden) channel count; channels double at each
    halving of resolution. Choices (defaults in ``PAPER_CHOICES``): ``g_upsample``,
    ``d_downsample``, ``g_norm``, ``d_norm`` (a norm block or ``"none"``), ``g_output_norm``,
    ``d_input_norm``, ``g_activation``, ``g_output_activation``, ``d_activation``,
    ``d_output_activation``, ``g_project``, ``d_head``, ``g_dense_layers``, ``d_dense_layers``,
    ``dense_features``, ``g_wrap``/``d_wrap`` (a wrap block such as ``"spectral_norm"``),
    and training settings (``lr_g``, ``lr_d``, ``beta1``, ``beta2``, ``batch_size``,
    ``init_std``, ``d_steps``); ``g_activation_params``/``d_activation_params`` pass block
    params (e.g. ``{"slope": 0.1}``).

    Example::

        spec = dcgan_spec(32, channels=1, g_upsample="nearest_conv", d_norm="none",
                          d_wrap="spectral_norm", beta1=0.9)
    """
    training = {k: choices.pop(k) for k in list(choices) if k in _TRAINING}
    extra_params = {
        k: dict(choices.pop(k) or {})
        for k in (f"{owner}_params" for owner in PARAM_OWNERS)
        if k in choices
    }
    unknown = set(choices) - set(PAPER_CHOICES)
    if unknown:
        from ganarch.errors import closest

        key = sorted(unknown)[0]
        raise SpecError(
            key, f"not a dcgan_spec choice; {closest(key, [*PAPER_CHOICES, *_TRAINING])}"
        )
    c = {**PAPER_CHOICES, **choices}
    for key, kind in CHOICE_KINDS.items():
        if not (_is_none(c[key]) and kind in NONE_KINDS):
            get_block(c[key], key, kind=kind)
    for key in ("image_size", "channels", "latent_dim", "width"):
        v = locals()[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise SpecError(key, f"must be a positive integer, got {v!r}")
    if image_size < 8 or 2 ** round(math.log2(image_size)) != image_size:
        raise SpecError("image_size", f"must be a power of two, at least 8, got {image_size}")
    for key in ("g_dense_layers", "d_dense_layers", "dense_features"):
        if isinstance(c[key], bool) or not isinstance(c[key], int) or c[key] < 0:
            raise SpecError(key, f"must be a non-negative integer, got {c[key]!r}")
    # limits before any list is built (a billion dense layers would fill the memory)
    for key, most in (("g_dense_layers", MAX_LAYERS // 2), ("d_dense_layers", MAX_LAYERS // 2)):
        if c[key] > most:
            raise SpecError(key, f"at most {most}, got {c[key]}")
    for key, most in (("image_size", MAX_IMAGE_SIZE), ("latent_dim", MAX_LATENT)):
        if locals()[key] > most:
            raise SpecError(key, f"at most {most}, got {locals()[key]}")

    n = int(math.log2(image_size // 4))  # resolution changes between 4×4 and the image
    g_act = LayerSpec(c["g_activation"], extra_params.get("g_activation_params", {}))
    d_act = LayerSpec(c["d_activation"], extra_params.get("d_activation_params", {}))
    g_wrap = () if _is_none(c["g_wrap"]) else (c["g_wrap"],)
    d_wrap = () if _is_none(c["d_wrap"]) else (c["d_wrap"],)

    def norm(which: str) -> list[LayerSpec]:
        return [] if _is_none(c[which]) else [LayerSpec(c[which])]

    def act(layer: LayerSpec) -> list[LayerSpec]:
        return [] if _is_none(layer.block) else [layer]

    g: list[LayerSpec] = []
    for _ in range(c["g_dense_layers"]):
        g += [LayerSpec("dense", {"features": c["dense_features"]}, g_wrap), *act(g_act)]
    g += [
        LayerSpec(c["g_project"], {"out_channels": width * 2 ** (n - 1)}, g_wrap),
        *norm("g_norm"),
        *act(g_act),
    ]
    for i in range(n - 1, 0, -1):
        g += [
            LayerSpec(c["g_upsample"], {"out_channels": width * 2 ** (i - 1)}, g_wrap),
            *norm("g_norm"),
            *act(g_act),
        ]
    g.append(LayerSpec(c["g_upsample"], {"out_channels": channels}, g_wrap))
    if c["g_output_norm"]:
        g += norm("g_norm")
    g += act(LayerSpec(c["g_output_activation"]))

    d: list[LayerSpec] = []
    for i in range(n):
        d.append(LayerSpec(c["d_downsample"], {"out_channels": width * 2**i}, d_wrap))
        if i > 0 or c["d_input_norm"]:
            d += norm("d_norm")
        d += act(d_act)
    for _ in range(c["d_dense_layers"]):
        d += [LayerSpec("dense", {"features": c["dense_features"]}, d_wrap), *act(d_act)]
    d.append(LayerSpec(c["d_head"], {}, d_wrap))
    d += act(LayerSpec(c["d_output_activation"]))

    meta = {"template": "dcgan", "width": width, "choices": {**c, **extra_params}}
    spec = GANSpec(
        image_size=image_size,
        channels=channels,
        latent_dim=latent_dim,
        generator=tuple(g),
        discriminator=tuple(d),
        training=TrainingSpec.from_dict(training),
        meta=meta,
    )
    spec.validate()
    return spec
