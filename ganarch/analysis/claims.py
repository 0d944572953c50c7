"""The seven architecture and training claims of Radford et al. (2015) as data.

Each :class:`Claim` says, for a trial's template ``choices`` (the keyword choices of
:func:`ganarch.dcgan_spec` plus training settings), which side of the claim the trial stands
on: ``"paper"``, ``"alternative"``, or ``None`` when the trial does not bear on the claim.
Choices a trial does not name take the paper's value (``PAPER_CHOICES`` and the
``TrainingSpec`` defaults), because that is what ``dcgan_spec`` builds for them.

Each claim also names the template choices (= Optuna parameter names in the shipped search
spaces) it maps to, for parameter importance, and the one documented change that
``ganarch ablate`` makes to the paper's DCGAN to test it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ganarch.spec import TrainingSpec
from ganarch.templates import PAPER_CHOICES, TemplateInfo

__all__ = [
    "BETA1_ALT_MIN",
    "BETA1_PAPER_MAX",
    "CLAIMS",
    "PAPER_TEMPLATE",
    "Claim",
    "Side",
    "declared_claims",
    "get_claim",
    "resolve",
]

Side = Literal["paper", "alternative"]

#: β1 at or below this stands with the paper (0.5), at or above ``BETA1_ALT_MIN`` with the
#: alternative (0.9); values in between (a continuous search) bear on neither side.
BETA1_PAPER_MAX = 0.6
BETA1_ALT_MIN = 0.8

_DEFAULTS: dict[str, Any] = {**PAPER_CHOICES, **TrainingSpec().to_dict()}


def resolve(choices: Mapping[str, Any] | None) -> dict[str, Any]:
    """The full choices of a trial: what it names, with the paper's values for the rest."""
    return {**_DEFAULTS, **dict(choices or {})}


def _none(value: Any) -> bool:
    return value is None or value == "none"


def _side(paper: bool) -> Side:
    return "paper" if paper else "alternative"


def _dense(c: Mapping[str, Any]) -> Side | None:
    return _side(int(c["g_dense_layers"]) == 0 and int(c["d_dense_layers"]) == 0)


def _conv(c: Mapping[str, Any]) -> Side | None:
    return _side(c["g_upsample"] == "tconv" and c["d_downsample"] == "strided_conv")


def _batchnorm(c: Mapping[str, Any]) -> Side | None:
    return _side(c["g_norm"] == "batchnorm" and c["d_norm"] == "batchnorm")


def _io_norm(c: Mapping[str, Any]) -> Side | None:
    g_used, d_used = not _none(c["g_norm"]), not _none(c["d_norm"])
    if not (g_used or d_used):
        return None  # no normalisation anywhere: the claim says nothing
    normed = (g_used and bool(c["g_output_norm"])) or (d_used and bool(c["d_input_norm"]))
    return _side(not normed)


def _g_act(c: Mapping[str, Any]) -> Side | None:
    return _side(c["g_activation"] == "relu" and c["g_output_activation"] == "tanh")


def _d_act(c: Mapping[str, Any]) -> Side | None:
    return _side(c["d_activation"] == "leaky_relu")


def _beta1(c: Mapping[str, Any]) -> Side | None:
    beta1 = float(c["beta1"])
    if beta1 <= BETA1_PAPER_MAX:
        return "paper"
    if beta1 >= BETA1_ALT_MIN:
        return "alternative"
    return None


@dataclass(frozen=True)
class Claim:
    """One claim of the paper.

    ``params`` are the template choices it maps to (importance is summed over those present in
    a study); ``alternative`` is the change ``ganarch ablate`` makes to the paper's DCGAN.
    """

    id: int
    name: str
    paper: str  # the paper's words (or a close paraphrase where the paper is terse)
    paper_side: str  # what counts as the paper's side, in words
    alternative_side: str
    params: tuple[str, ...]
    alternative: Mapping[str, Any] = field(default_factory=dict)
    _side: Callable[[Mapping[str, Any]], Side | None] = field(repr=False, default=lambda c: None)
    #: The full choices a trial's own are laid over: the paper's DCGAN's, or (for a claim as
    #: another template declares it, see :func:`declared_claims`) that template's defaults.
    base: Mapping[str, Any] | None = field(default=None, repr=False)

    def side(self, choices: Mapping[str, Any] | None) -> Side | None:
        """``"paper"``, ``"alternative"`` or ``None`` for a trial's (possibly partial) choices."""
        full = resolve(choices) if self.base is None else {**self.base, **dict(choices or {})}
        try:
            return self._side(full)
        except (KeyError, TypeError, ValueError):
            return None  # a value this claim cannot read (e.g. a non-numeric beta1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "paper": self.paper,
            "paper_side": self.paper_side,
            "alternative_side": self.alternative_side,
            "params": list(self.params),
            "ablation": dict(self.alternative),
        }


CLAIMS: tuple[Claim, ...] = (
    Claim(
        1,
        "no dense hidden layers",
        "Remove fully connected hidden layers for deeper architectures.",
        "g_dense_layers == 0 and d_dense_layers == 0 (G's projection and D's head allowed)",
        "any fully connected hidden layer in G or D",
        ("g_dense_layers", "d_dense_layers"),
        {"g_dense_layers": 1, "d_dense_layers": 1},
        _dense,
    ),
    Claim(
        2,
        "strided conv, no pooling",
        "Replace any pooling layers with strided convolutions (discriminator) and "
        "fractional-strided convolutions (generator).",
        'g_upsample == "tconv" and d_downsample == "strided_conv"',
        "pooling or fixed upsampling blocks (any other up/downsample)",
        ("g_upsample", "d_downsample"),
        {"g_upsample": "nearest_conv", "d_downsample": "conv_avgpool"},
        _conv,
    ),
    Claim(
        3,
        "batchnorm in G and D",
        "Use batchnorm in both the generator and the discriminator.",
        'g_norm == "batchnorm" and d_norm == "batchnorm"',
        "any other norm (or none) in G or D",
        ("g_norm", "d_norm"),
        {"g_norm": "none", "d_norm": "none"},
        _batchnorm,
    ),
    Claim(
        4,
        "no norm on G output / D input",
        "Directly applying batchnorm to all layers resulted in sample oscillation and model "
        "instability. This was avoided by not applying batchnorm to the generator output layer "
        "and the discriminator input layer.",
        "a norm is used, but not on G's output layer nor on D's input layer",
        "a norm on G's output layer or D's input layer (trials with no norm at all: neither side)",
        ("g_output_norm", "d_input_norm"),
        {"g_output_norm": True, "d_input_norm": True},
        _io_norm,
    ),
    Claim(
        5,
        "ReLU in G, Tanh output",
        "Use ReLU activation in generator for all layers except for the output, which uses Tanh.",
        'g_activation == "relu" and g_output_activation == "tanh"',
        "any other hidden or output activation in G",
        ("g_activation", "g_output_activation"),
        {"g_activation": "elu"},  # Tanh output kept: the ablation changes one thing
        _g_act,
    ),
    Claim(
        6,
        "LeakyReLU in D",
        "Use LeakyReLU activation in the discriminator for all layers.",
        'd_activation == "leaky_relu"',
        "any other activation in D",
        ("d_activation",),
        {"d_activation": "relu"},
        _d_act,
    ),
    Claim(
        7,
        "Adam beta1 0.5",
        "Leaving the momentum term beta1 at the suggested value of 0.9 resulted in training "
        "oscillation and instability while reducing it to 0.5 helped stabilize training.",
        f"beta1 <= {BETA1_PAPER_MAX} (the paper: 0.5)",
        f"beta1 >= {BETA1_ALT_MIN} (the default 0.9)",
        ("beta1",),
        {"beta1": 0.9},
        _beta1,
    ),
)


#: The template whose choices the claims' rules above read by name.
PAPER_TEMPLATE = "dcgan"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    return a == b


def _at_defaults(
    toggles: tuple[str, ...], defaults: Mapping[str, Any], c: Mapping[str, Any]
) -> Side:
    return _side(all(_same(c.get(n), defaults.get(n)) for n in toggles))


def declared_claims(info: TemplateInfo, claims: Sequence[Claim] = CLAIMS) -> tuple[Claim, ...]:
    """The claims among ``claims`` that template ``info`` declares it can test
    (``TemplateInfo.claims``), as the rules table judges them.

    ``dcgan``'s are the claims as written above (their rules read its choices). Another
    template's claim N is judged by the choices it declares for N: a trial stands with the
    paper when every one of them is at the template's default (the template's statement of the
    paper's choice), with the alternative when any is not; the two levels a designed study
    moves them between. A template that declares no claims gets none.
    """
    if info.name == PAPER_TEMPLATE:
        return tuple(c for c in claims if c.id in info.claims)
    defaults = info.resolve()
    out = []
    for claim in claims:
        toggles = tuple(info.claims.get(claim.id, ()))
        if not toggles:
            continue
        at = ", ".join(f"{n} = {defaults.get(n)!r}" for n in toggles)
        out.append(
            replace(
                claim,
                paper_side=f"{at} (template {info.name!r}'s defaults)",
                alternative_side=f"any other value of {', '.join(toggles)}",
                params=toggles,
                alternative={},
                _side=functools.partial(_at_defaults, toggles, defaults),
                base=defaults,
            )
        )
    return tuple(out)


def get_claim(claim_id: int | str) -> Claim:
    """A claim by its number (``1``..``7``)."""
    for claim in CLAIMS:
        if str(claim.id) == str(claim_id):
            return claim
    raise KeyError(f"no claim {claim_id!r}; the claims are 1..{len(CLAIMS)}")
