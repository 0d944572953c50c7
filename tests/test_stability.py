"""Every stability component, and the combined stability, pinned to values computed by hand
(issue 9): a wrong divisor, a dropped case or a changed weight shows up as a wrong number."""

from __future__ import annotations

import math

import pytest

from ganarch.score import stability as st


def _rec(q, d_real=0.6, d_fake=0.4, loss_d=1.2, loss_g=0.9):
    return {"quality": q, "d_real": d_real, "d_fake": d_fake, "loss_d": loss_d, "loss_g": loss_g}


def _won(q=0.5):
    """An evaluation at which D had won (D(x) > 0.95, D(G(z)) < 0.05)."""
    return _rec(q, d_real=0.99, d_fake=0.01)


# --- saturation --------------------------------------------------------------------------------


def test_saturation_counts_sustained_stretches_and_a_run_that_ends_saturated():
    # Two in a row out of four: 2/4.
    assert st.saturation([_won(), _won(), _rec(0.5), _rec(0.5)])["saturation"] == 0.5
    # A single saturated evaluation in the middle is a blip: 0 (but 1/3 of evaluations).
    blip = st.saturation([_rec(0.5), _won(), _rec(0.5)])
    assert blip["saturation"] == 0 and blip["saturated_fraction"] == pytest.approx(1 / 3)
    # A single saturated evaluation at the end: the run ends saturated, so it counts: 1/3.
    end = st.saturation([_rec(0.5), _rec(0.5), _won()])
    assert end["saturation"] == pytest.approx(1 / 3) and end["saturated_longest"] == 1
    # The only evaluation: 1.
    assert st.saturation([_won()])["saturation"] == 1.0
    # D's loss below 0.01 is saturation whatever its outputs.
    assert st.is_saturated(_rec(0.5, loss_d=0.005)) and not st.is_saturated(_rec(0.5))


# --- oscillation, gap, learned -------------------------------------------------------------------


def test_oscillation_is_the_detrended_spread_of_the_last_third():
    # Six evaluations: the last max(3, ⌈6/3⌉) = 3 qualities 0.6, 0.4, 0.6 have mean 1.6/3 and
    # a least-squares slope of 0, residuals (1/15, −2/15, 1/15), population std √(2/225);
    # cv = √(2/225) / (1.6/3) = 1/(4√2); badness = cv / 0.25 = 1/√2.
    zigzag = [_rec(q) for q in (0.5, 0.6, 0.4, 0.6, 0.4, 0.6)]
    assert st.oscillation(zigzag) == pytest.approx(1 / math.sqrt(2), rel=1e-9)
    # Steady progress is not oscillation.
    assert st.oscillation([_rec(0.1 * i) for i in range(1, 7)]) == pytest.approx(0, abs=1e-12)
    # Below a mean quality of 0.1 the cv is taken relative to 0.1: qualities 0.02, 0.03, 0.06
    # have slope 0.02, residuals (1/300, −2/300, 1/300), std √2/300; badness √2/300/0.1/0.25.
    low = [_rec(q) for q in (0.02, 0.03, 0.06)]
    assert st.oscillation(low) == pytest.approx(math.sqrt(2) / 300 / 0.1 / 0.25, rel=1e-9)
    assert st.oscillation(low[:2]) is None


def test_gap_and_learned():
    g = st.quality_gap([_rec(0.2), _rec(0.8), _rec(0.6)])
    assert g["gap"] == pytest.approx(0.25) and g["best_quality"] == 0.8
    assert st.learned([_rec(0.03), _rec(0.06)]) == pytest.approx(0.06 / 0.3)
    assert st.learned([_rec(0.05), _rec(0.45)]) == 1.0
    assert st.learned([{"loss_d": 1.0}]) is None


# --- seed spread --------------------------------------------------------------------------------


def test_seed_spread_uses_the_sample_standard_deviation():
    # 0.4, 0.5, 0.6: sample std (n − 1) = 0.1, mean 0.5, cv 0.2, badness 0.2 / 0.25 = 0.8.
    s = st.seed_spread([0.4, 0.5, 0.6])
    assert s["quality_std"] == pytest.approx(0.1, rel=1e-12)
    assert s["seed_spread"] == pytest.approx(0.8, rel=1e-12)
    # Low mean qualities: cv relative to 0.1. 0.02, 0.04: std √2·0.01, badness √2·0.01/0.1/0.25.
    assert st.seed_spread([0.02, 0.04])["seed_spread"] == pytest.approx(
        math.sqrt(2) * 0.01 / 0.1 / 0.25, rel=1e-12
    )
    assert st.seed_spread([0.5])["seed_spread"] is None


# --- the combination -------------------------------------------------------------------------


def test_stability_combines_the_components_as_documented():
    zigzag = [_rec(q) for q in (0.5, 0.6, 0.4, 0.6, 0.4, 0.6)]
    s = st.stability(zigzag)
    # learned 1, saturation 0, oscillation 1/√2, gap 0, no seed spread: W = 0.8.
    assert s["learned"] == 1.0 and s["saturation"] == 0 and s["gap"] == 0
    assert s["stability"] == pytest.approx(1 - 0.2 / math.sqrt(2) / 0.8, rel=1e-9)

    # Saturated from the second of four evaluations on, quality 0.6 falling to 0.45:
    # saturation 3/4, gap 0.25, oscillation of (0.6, 0.5, 0.45): slope −0.075, residuals
    # (1/120, −1/60, 1/120), std √2/120 over mean 31/60.
    fell = [_rec(0.6), _won(0.6), _won(0.5), _won(0.45)]
    s = st.stability(fell)
    osc = math.sqrt(2) / 120 / (1.55 / 3) / 0.25
    assert s["saturation"] == 0.75 and s["gap"] == pytest.approx(0.25)
    assert s["oscillation"] == pytest.approx(osc, rel=1e-9)
    expected = 1 - (0.4 * 0.75 + 0.2 * osc + 0.2 * 0.25) / 0.8
    assert s["stability"] == pytest.approx(expected, rel=1e-9)

    # A run that never learned is not stable, however still it sits: learned = 0.06 / 0.3.
    never = [_rec(q) for q in (0.02, 0.03, 0.06)]
    s = st.stability(never)
    osc = math.sqrt(2) / 300 / 0.1 / 0.25
    assert s["stability"] == pytest.approx(0.2 * (1 - 0.2 * osc / 0.8), rel=1e-9)
    assert s["stability"] < 0.25

    # With seeds: the spread joins with weight 0.2.
    s = st.stability(zigzag, seed_qualities=[0.4, 0.5, 0.6])
    assert s["stability"] == pytest.approx(1 - (0.2 / math.sqrt(2) + 0.2 * 0.8) / 1.0, rel=1e-9)

    # Diverged: 0 whatever the rest.
    assert st.stability([_rec(0.6, loss_d=float("nan"))])["stability"] == 0


def test_the_scorer_judges_divergence_by_its_own_threshold_whatever_stopped_the_trainer():
    # A trainer with a looser threshold ran on past a loss of 500: exploding by this rule.
    loose = st.stability([_rec(0.5), _rec(0.4, loss_g=500.0)], diverged=False)
    assert loose["diverged"] and loose["failure"] == "exploding loss" and loose["stability"] == 0
    # A stricter trainer stopped at a loss of 0.9 (its stop record has no quality): not
    # exploding by this rule, so not diverged.
    stop = {**_rec(None), "failure": "exploding loss"}
    strict = st.stability([_rec(0.5), stop], diverged=True)
    assert not strict["diverged"] and strict["failure"] is None and strict["stability"] > 0
    # Samples that became NaN while the losses stayed finite: only the trainer saw it.
    nan = st.stability([_rec(0.5), {**_rec(None), "failure": "nan"}], diverged=True)
    assert nan["diverged"] and nan["failure"] == "nan" and nan["stability"] == 0


def test_aggregate_seeds_averages_the_components_and_discounts_diverged_seeds():
    a = st.stability([_rec(q) for q in (0.5, 0.6, 0.4, 0.6, 0.4, 0.6)])
    b = st.stability([_rec(q) for q in (0.02, 0.03, 0.06)])
    agg = st.aggregate_seeds([{**a, "quality": 0.6}, {**b, "quality": 0.06}])
    learned = (1 + 0.2) / 2
    osc = (1 / math.sqrt(2) + math.sqrt(2) / 300 / 0.1 / 0.25) / 2
    # Final qualities 0.6 and 0.06: sample std 0.54/√2, mean 0.33, badness capped at 1.
    assert agg["learned"] == pytest.approx(learned) and agg["seed_spread"] == 1.0
    assert agg["stability"] == pytest.approx(learned * (1 - (0.2 * osc + 0.2) / 1.0), rel=1e-9)
    assert agg["quality"] == pytest.approx(0.33)

    one_diverged = st.aggregate_seeds([{**a, "quality": 0.6}, {"diverged": True, "quality": 0.7}])
    # Qualities 0.6 and 0 (diverged counts 0): spread capped at 1; then × 1/2 seeds alive.
    expected = (1 - (0.2 / math.sqrt(2) + 0.2) / 1.0) / 2
    assert one_diverged["stability"] == pytest.approx(expected, rel=1e-9)
    assert one_diverged["quality"] == pytest.approx(0.3)
