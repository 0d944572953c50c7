"""A template's ``claims=`` declaration decides which of the paper's claims ``ganarch rules``
judges on its studies, and how: a trial stands with the paper when the choices the template
declares for a claim are at the template's defaults (review M4 of issue 13)."""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import create_trial

import ganarch
from ganarch.analysis.claims import declared_claims, get_claim
from ganarch.analysis.rules import rules_table
from ganarch.templates import get_template

optuna.logging.set_verbosity(optuna.logging.WARNING)

DEFAULTS: dict[str, Any] = {"up": "nearest_conv", "act": "leaky_relu", "width_mult": 1}


def claimed_spec(
    image_size: int, channels: int = 1, latent_dim: int = 8, width: int = 4, **choices: Any
) -> ganarch.GANSpec:
    """A tiny conv family that declares two of the paper's claims."""
    c = {**DEFAULTS, **choices}
    w = width * c["width_mult"]
    g = [
        ganarch.LayerSpec("project_dense", {"out_channels": w, "size": image_size // 2}),
        ganarch.LayerSpec(c["act"]),
        ganarch.LayerSpec(c["up"], {"out_channels": channels}),
        ganarch.LayerSpec("tanh"),
    ]
    d = [
        ganarch.LayerSpec("strided_conv", {"out_channels": w}),
        ganarch.LayerSpec(c["act"]),
        ganarch.LayerSpec("head_dense"),
    ]
    return ganarch.GANSpec(image_size, channels, latent_dim, tuple(g), tuple(d))


class Claimed:
    @ganarch.hookimpl
    def ganarch_register_templates(self, registrar) -> None:
        registrar.add(
            "claimed",
            build=claimed_spec,
            defaults=DEFAULTS,
            block_choices={"up": "upsample", "act": "activation"},
            claims={6: ("act",), 7: ("beta1",)},  # the template's own names for the toggles
        )


def _study(template: str, n: int = 120, seed: int = 0) -> optuna.Study:
    """``act`` at the template default (leaky_relu) helps (+0.3), beta1 0.5 hurts (-0.3)."""
    rng = np.random.default_rng(seed)
    dists = {
        "act": CategoricalDistribution(["leaky_relu", "relu"]),
        "beta1": CategoricalDistribution([0.5, 0.9]),
    }
    study = optuna.create_study(direction="maximize")
    for _ in range(n):
        params = {
            "act": str(rng.choice(["leaky_relu", "relu"])),
            "beta1": float(rng.choice([0.5, 0.9])),
        }
        score = 1.0 + rng.normal(0, 0.1) + 0.3 * (params["act"] == "leaky_relu")
        score -= 0.3 * (params["beta1"] == 0.5)
        choices = {**DEFAULTS, **params}
        study.add_trial(
            create_trial(
                params=params,
                distributions=dists,
                value=score,
                user_attrs={"choices": choices, "spec": {"meta": {"template": template}}},
            )
        )
    return study


def test_declared_claims_are_judged_by_the_templates_toggles(plugin_state) -> None:
    plugin_state(Claimed(), name="claimed-plugin")
    info = get_template("claimed")
    claims = declared_claims(info)
    assert [c.id for c in claims] == [6, 7]
    six = claims[0]
    assert six.params == ("act",) and "template 'claimed'" in six.paper_side
    # the template's default is the paper's side, whatever the claim's own rule names
    assert six.side({"act": "leaky_relu"}) == "paper" and six.side({"act": "relu"}) == "alternative"
    assert six.side({}) == "paper"  # an unnamed choice takes the template's default
    assert claims[1].side({"beta1": 0.9}) == "alternative"
    assert declared_claims(get_template("dcgan")) == tuple(
        get_claim(i) for i in range(1, 8)
    )  # dcgan: the claims as written

    table = rules_table(_study("claimed"))
    rows = {r.claim.id: r for r in table.rows}
    assert set(rows) == {6, 7}  # only what the template declares
    assert rows[6].verdict == "confirmed" and rows[7].verdict == "contradicted"
    assert any("declares the paper's claims 6, 7" in n for n in table.notes)


def test_a_template_without_claims_or_not_installed_gets_no_verdicts(plugin_state) -> None:
    plugin_state(Claimed(), name="claimed-plugin")
    table = rules_table(_study("tiny_unknown"))
    assert table.rows == ()
    assert any("is not registered here" in n for n in table.notes)


def test_dcgan_rows_are_unchanged_by_declared_claims(plugin_state) -> None:
    plugin_state(Claimed(), name="claimed-plugin")
    study = _study("dcgan")  # the same trials read as a dcgan study: dcgan's own rules
    rows = {r.claim.id: r for r in rules_table(study).rows}
    assert set(rows) == set(range(1, 8))
    # dcgan's claim 6 reads d_activation, which these trials never set: all on the paper's side
    assert rows[6].effect.n_alt == 0
