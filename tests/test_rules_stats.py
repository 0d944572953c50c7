"""The rules statistics on synthetic studies with planted effects and planted nulls."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from ganarch.analysis import CLAIMS, get_claim, rules_table
from ganarch.analysis.claims import resolve
from ganarch.analysis.stats import (
    N_BOOTSTRAP,
    N_MIN,
    N_RESAMPLES,
    UNSTABLE_RATE,
    Effect,
    bootstrap_diff,
    bootstrap_paired,
    flip_rate,
    search_diff,
    t_paired,
    t_quantile,
    verdict,
    welch_diff,
)
from ganarch.templates import PAPER_CHOICES

optuna.logging.set_verbosity(optuna.logging.WARNING)

DISTS = {
    "g_norm": CategoricalDistribution(["batchnorm", "none"]),
    "d_norm": CategoricalDistribution(["batchnorm", "none"]),
    "d_activation": CategoricalDistribution(["leaky_relu", "relu"]),
    "beta1": CategoricalDistribution([0.5, 0.9]),
    "g_dense_layers": IntDistribution(0, 1),
}
D6, D7 = 0.3, -0.3  # planted effects of claim 6 (paper better) and claim 7 (paper worse)


def synthetic_study(n: int = 120, seed: int = 1, maximize: bool = True) -> optuna.Study:
    """Claim 6 helps (+0.3), claim 7 hurts (-0.3), claim 3 does nothing, claim 1 is rare."""
    rng = np.random.default_rng(seed)
    study = optuna.create_study(direction="maximize" if maximize else "minimize")
    for i in range(n):
        params = {
            "g_norm": str(rng.choice(["batchnorm", "none"])),
            "d_norm": str(rng.choice(["batchnorm", "none"])),
            "d_activation": str(rng.choice(["leaky_relu", "relu"])),
            "beta1": float(rng.choice([0.5, 0.9])),
            "g_dense_layers": 1 if i < N_MIN - 1 else 0,  # too few on the alternative side
        }
        score = 1.0 + rng.normal(0, 0.1)
        score += D6 * (params["d_activation"] == "leaky_relu")
        score += D7 * (params["beta1"] == 0.5)
        value = score if maximize else -score
        study.add_trial(
            create_trial(
                params=params,
                distributions=DISTS,
                value=value,
                user_attrs={"choices": dict(params)},
            )
        )
    return study


def _row(table, claim_id):
    return next(r for r in table.rows if r.claim.id == claim_id)


def test_claims_sides():
    assert [c.id for c in CLAIMS] == list(range(1, 8))
    for claim in CLAIMS:
        assert claim.side(PAPER_CHOICES) in ("paper", None)
        assert claim.side({}) in ("paper", None)  # unnamed choices take the paper's values
        # the ablation's single change moves a paper DCGAN to the alternative side
        assert claim.side(claim.alternative) == "alternative"
        assert claim.params
    assert get_claim(1).side({"g_dense_layers": 1}) == "alternative"
    assert get_claim(1).side({"g_project": "project_dense", "d_head": "head_dense"}) == "paper"
    assert get_claim(2).side({"g_upsample": "pixel_shuffle"}) == "alternative"
    assert get_claim(2).side({"d_downsample": "conv_maxpool"}) == "alternative"
    assert get_claim(3).side({"d_norm": "layernorm"}) == "alternative"
    # claim 4 says nothing about a net without norms
    assert get_claim(4).side({"g_norm": "none", "d_norm": "none", "g_output_norm": True}) is None
    assert get_claim(4).side({"g_norm": "none", "d_input_norm": True}) == "alternative"
    assert get_claim(5).side({"g_output_activation": "sigmoid"}) == "alternative"
    assert get_claim(6).side({"d_activation": "elu"}) == "alternative"
    assert get_claim(7).side({"beta1": 0.0}) == "paper"
    assert get_claim(7).side({"beta1": 0.7}) is None  # a continuous search: neither side
    assert get_claim(7).side({"beta1": 0.95}) == "alternative"
    assert resolve({"beta1": 0.9})["beta1"] == 0.9
    with pytest.raises(KeyError):
        get_claim(8)


def test_bootstrap_ci_covers_true_effect():
    rng = np.random.default_rng(0)
    hits = 0
    reps = 200
    for r in range(reps):
        a = rng.normal(0.5, 1.0, 30)
        b = rng.normal(0.0, 1.0, 30)
        e = bootstrap_diff(a, b, n_resamples=500, seed=r)
        hits += e.ci_low <= 0.5 <= e.ci_high
        assert e.ci_low <= e.effect <= e.ci_high
    assert 0.88 <= hits / reps <= 0.99  # percentile bootstrap: close to nominal 95%


def test_bootstrap_is_seeded_and_drops_nonfinite():
    a, b = [1.0, 2.0, 3.0, math.nan], [0.0, 0.5, 1.0]
    e1, e2 = bootstrap_diff(a, b, seed=3), bootstrap_diff(a, b, seed=3)
    assert e1 == e2
    assert e1.n_paper == 3 and e1.effect == pytest.approx(2.0 - 0.5)
    empty = bootstrap_diff([], b)
    assert empty.effect is None and verdict(empty) == "not enough trials"


def test_paired_bootstrap():
    rng = np.random.default_rng(5)
    seed_effect = rng.normal(0, 1.0, 8)  # large between-seed variance, shared by both sides
    paper = 2.0 + seed_effect + rng.normal(0, 0.05, 8)
    alt = 1.8 + seed_effect + rng.normal(0, 0.05, 8)
    paired = bootstrap_paired(paper, alt)
    unpaired = bootstrap_diff(paper, alt)
    assert paired.paired and paired.n_paper == paired.n_alt == 8
    assert paired.ci_low <= 0.2 <= paired.ci_high
    assert verdict(paired) == "confirmed"  # pairing removes the seed variance ...
    assert verdict(unpaired) == "inconclusive"  # ... that swamps the unpaired comparison
    dropped = bootstrap_paired([1.0, math.nan, 3.0], [0.0, 1.0, 2.0])
    assert dropped.n_paper == 2 and dropped.effect == pytest.approx(1.0)
    with pytest.raises(ValueError):
        bootstrap_paired([1.0], [1.0, 2.0])


def test_verdict_rule():
    def eff(lo, hi, n=5):
        return Effect(n, n, 0.0, 0.0, (lo + hi) / 2, lo, hi)

    assert verdict(eff(0.1, 0.3)) == "confirmed"
    assert verdict(eff(-0.3, -0.1)) == "contradicted"
    assert verdict(eff(-0.1, 0.3)) == "inconclusive"
    assert verdict(eff(0.0, 0.3)) == "inconclusive"  # touching zero is not "entirely"
    assert verdict(eff(0.1, 0.3), higher_is_better=False) == "contradicted"
    assert verdict(eff(0.1, 0.3, n=N_MIN - 1)) == "not enough trials"


def test_an_interval_without_variance_gives_no_verdict():
    """Identical scores (or rounding noise) give a zero-width interval: it measures nothing,
    so no claim is confirmed or contradicted on it, in an ablation, a search or a design."""
    same = t_paired([0.5, 0.6, 0.7], [0.4, 0.5, 0.6])  # every difference exactly 0.1
    assert same.ci_high - same.ci_low < 1e-12 and verdict(same) == "inconclusive"
    flat = welch_diff([0.5, 0.5, 0.5], [0.4, 0.4, 0.4])
    assert verdict(flat) == "inconclusive"
    rng = np.random.default_rng(0)
    tiny = t_paired(0.5 + rng.normal(0, 1e-15, 5), 0.5 + rng.normal(0, 1e-15, 5))
    assert verdict(tiny) == "inconclusive"
    from ganarch.analysis.designed import design_verdict, fit_main_effects

    x = np.array([[s1, s2] for s1 in (1, -1) for s2 in (1, -1) for _ in range(2)])
    fit = fit_main_effects(x, 0.5 + 0.1 * x[:, 0])  # no noise at all: sigma 0
    assert design_verdict(fit.effects[0]) == "inconclusive"
    noisy = fit_main_effects(x, 0.5 + 0.1 * x[:, 0] + rng.normal(0, 0.001, len(x)))
    assert design_verdict(noisy.effects[0]) == "confirmed"  # a real noise estimate: a verdict


@pytest.mark.parametrize("maximize", [True, False])
def test_rules_table_finds_planted_effects(maximize):
    study = synthetic_study(maximize=maximize)
    table = rules_table(study)
    sign = 1 if maximize else -1
    r6, r7, r3, r1 = (_row(table, i) for i in (6, 7, 3, 1))
    assert r6.verdict == "confirmed"
    assert r6.effect.ci_low <= sign * D6 <= r6.effect.ci_high
    assert r7.verdict == "contradicted"
    assert r7.effect.ci_low <= sign * D7 <= r7.effect.ci_high
    assert r3.verdict == "inconclusive"  # planted null
    assert r1.verdict == "not enough trials" and r1.effect.n_alt == N_MIN - 1
    for cid in (2, 4, 5):  # never varied: every trial on the paper's side
        assert _row(table, cid).verdict == "not enough trials"
    assert table.evidence.startswith("search (sampler-biased)")
    assert "PED-ANOVA" in table.evaluator and "PedAnovaImportanceEvaluator" in table.evaluator
    assert table.higher_is_better is maximize
    assert r6.importance > r3.importance and r7.importance > r3.importance
    assert _row(table, 2).importance is None and _row(table, 2).importance_note == "not searched"
    assert set(r3.param_importances) == {"g_norm", "d_norm"}
    d = table.to_dict()
    assert d["importance_evaluator"] == table.evaluator and len(d["rules"]) == 7


@pytest.mark.parametrize("n", [24, 120])  # Welch t (under 30 a side), bootstrap (from 30)
def test_a_search_table_row_carries_its_flip_rate(n):
    table = rules_table(synthetic_study(n=n, maximize=False))
    r6, r3, r1 = (_row(table, i) for i in (6, 3, 1))
    assert r6.effect.method == ("welch t" if n < 2 * N_BOOTSTRAP else "bootstrap")
    for row in (r6, r3):
        assert row.flip_rate == pytest.approx(flip_rate(row.effect, higher_is_better=False))
        assert row.to_dict()["flip_rate"] == row.flip_rate and 0.0 <= row.flip_rate <= 1.0
    assert r1.flip_rate is None  # not enough trials: no rate
    if n == 120:  # a planted effect of 3 standard deviations, 60 trials a side: no doubt
        assert r6.verdict == "confirmed" and r6.flip_rate < 0.01 and r6.stable
    note = next(n for n in table.notes if n.startswith("flips: a model-based prediction"))
    assert "chosen by its sampler" in note and "not a controlled re-run" in note
    # A Welch rate is exact only on its Welch–Satterthwaite df: the note does not say "exact:".
    rated = {r.effect.method for r in table.rows if r.flip_rate is not None}
    assert rated == ({"welch t"} if n == 24 else {"welch t", "bootstrap"})
    assert ("Welch–Satterthwaite df" in note) == ("welch t" in rated) != ("exact:" in note)
    assert ("normal limit for a bootstrap" in note) == ("bootstrap" in rated)
    # The "(unstable)" rule of every table: a confirmed verdict near its interval's edge.
    edge = _effect_at(2.2, None, method="bootstrap", n=40)
    shaky = dataclasses.replace(r6, effect=edge, flip_rate=flip_rate(edge), verdict="confirmed")
    assert shaky.flip_rate >= UNSTABLE_RATE and shaky.shown_verdict == "confirmed (unstable)"


@pytest.mark.parametrize(
    ("evaluator", "cls"),
    [("fanova", "FanovaImportanceEvaluator"), ("mdi", "MeanDecreaseImpurityImportanceEvaluator")],
)
def test_rules_table_other_evaluators(evaluator, cls):
    table = rules_table(synthetic_study(n=60), evaluator=evaluator)
    assert cls in table.evaluator
    assert _row(table, 6).importance > _row(table, 3).importance


def test_failed_pruned_and_penalised_trials():
    study = synthetic_study(n=30)
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"failure": "oom"}))
    study.add_trial(
        create_trial(
            params={"d_activation": "relu"},
            distributions={"d_activation": DISTS["d_activation"]},
            state=TrialState.PRUNED,
        )
    )
    study.add_trial(
        create_trial(
            params={"d_activation": "relu"},
            distributions={"d_activation": DISTS["d_activation"]},
            value=-10.0,
            user_attrs={"choices": {"d_activation": "relu"}, "failure": "nan"},
        )
    )
    table = rules_table(study)
    assert table.n_trials == 31  # the penalised trial counts, FAIL and PRUNED do not
    assert "1 of them failed" in table.notes[0] and "1 fail" in table.notes[0]
    assert "1 pruned" in table.notes[0]


def test_few_trials_give_no_importance_but_a_note():
    table = rules_table(synthetic_study(n=6))
    assert all(r.importance is None for r in table.rows)
    assert any("too few complete trials" in n for n in table.notes)
    assert "PED-ANOVA" in table.evaluator


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_multi_objective_uses_quality():
    rng = np.random.default_rng(2)
    study = optuna.create_study(directions=["maximize", "maximize"])
    study.set_metric_names(["stability", "quality"])
    for _ in range(40):
        act = str(rng.choice(["leaky_relu", "relu"]))
        quality = 1.0 + 0.5 * (act == "leaky_relu") + rng.normal(0, 0.05)
        stability = 1.0 - 0.5 * (act == "leaky_relu") + rng.normal(0, 0.05)
        study.add_trial(
            create_trial(
                params={"d_activation": act},
                distributions={"d_activation": DISTS["d_activation"]},
                values=[stability, quality],
                user_attrs={"choices": {"d_activation": act}},
            )
        )
    table = rules_table(study)
    assert table.score == "quality"
    assert _row(table, 6).verdict == "confirmed"
    assert _row(table, 6).importance == pytest.approx(1.0)


def test_choices_fall_back_to_params():
    study = optuna.create_study(direction="maximize")
    dist = CategoricalDistribution(["leaky_relu", "relu"])
    for i in range(8):
        act = "leaky_relu" if i % 2 else "relu"
        study.add_trial(
            create_trial(
                params={"d_activation|x": act}, distributions={"d_activation|x": dist}, value=i % 2
            )
        )
    row = _row(rules_table(study), 6)
    assert row.effect.n_paper == row.effect.n_alt == 4


def test_conditional_parameters_and_evaluators():
    """A per-branch parameter ("g_output_norm|batchnorm") maps to its claim; PED-ANOVA assesses
    it, fANOVA leaves conditional parameters out and the row says so."""
    rng = np.random.default_rng(3)
    norm = CategoricalDistribution(["batchnorm", "none"])
    flag = CategoricalDistribution([False, True])
    study = optuna.create_study(direction="maximize")
    for _ in range(40):
        g_norm = str(rng.choice(["batchnorm", "none"]))
        params = {"g_norm": g_norm}
        dists = {"g_norm": norm}
        if g_norm == "batchnorm":
            params["g_output_norm|batchnorm"] = bool(rng.integers(2))
            dists["g_output_norm|batchnorm"] = flag
        choices = {"g_norm": g_norm, "g_output_norm": params.get("g_output_norm|batchnorm", False)}
        value = 1.0 - 0.3 * choices["g_output_norm"] + rng.normal(0, 0.05)
        study.add_trial(
            create_trial(
                params=params, distributions=dists, value=value, user_attrs={"choices": choices}
            )
        )
    ped = _row(rules_table(study), 4)
    assert ped.verdict == "confirmed"
    assert list(ped.param_importances) == ["g_output_norm|batchnorm"]
    fan = _row(rules_table(study, evaluator="fanova"), 4)
    assert fan.importance is None and "conditional" in fan.importance_note
    assert fan.verdict == "confirmed"  # the effect does not depend on the evaluator


# -- the intervals, pinned against hand-written references ---------------------------------------


def test_bootstrap_diff_matches_a_hand_written_resample():
    """95% (not 90%) percentiles of a resample that draws each side with its own size."""
    paper = [0.9, 0.4, 0.7]  # n = N_MIN on one side ...
    alt = [0.1, 0.35, 0.2, 0.6, 0.05]  # ... and a different size on the other
    assert len(paper) == N_MIN
    e = bootstrap_diff(paper, alt, seed=7)
    rng = np.random.default_rng(7)
    a, b = np.array(paper), np.array(alt)
    idx_a = rng.integers(0, 3, size=(N_RESAMPLES, 3))
    idx_b = rng.integers(0, 5, size=(N_RESAMPLES, 5))
    diffs = a[idx_a].mean(axis=1) - b[idx_b].mean(axis=1)
    assert (e.ci_low, e.ci_high) == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])))
    assert e.n_paper == 3 and e.n_alt == 5
    assert e.effect == pytest.approx(a.mean() - b.mean())
    assert verdict(e) != "not enough trials"  # n = N_MIN on a side is enough for a verdict


def test_paired_bootstrap_matches_a_hand_written_resample():
    paper, alt = [0.52, 0.61, 0.47, 0.55], [0.50, 0.58, 0.49, 0.41]
    e = bootstrap_paired(paper, alt, seed=4)
    d = np.array(paper) - np.array(alt)
    rng = np.random.default_rng(4)
    boot = d[rng.integers(0, 4, size=(N_RESAMPLES, 4))].mean(axis=1)
    assert (e.ci_low, e.ci_high) == pytest.approx(tuple(np.percentile(boot, [2.5, 97.5])))


def test_t_quantiles_match_the_tables():
    # two-sided 95% t quantiles from any statistics table
    assert t_quantile(0.95, 2) == pytest.approx(4.302653, abs=1e-6)
    assert t_quantile(0.95, 8) == pytest.approx(2.306004, abs=1e-6)
    assert t_quantile(0.95, 1e6) == pytest.approx(1.959964, abs=1e-5)


def test_paired_t_interval_at_n_min():
    """The ablation's interval over 3 seeds: mean ± t(0.975, 2) · sd / √3, by hand."""
    paper, alt = [0.71, 0.64, 0.69], [0.70, 0.66, 0.62]
    d = [0.01, -0.02, 0.07]
    mean = sum(d) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    half = 4.302653 * sd / math.sqrt(3)
    e = t_paired(paper, alt)
    assert e.method == "paired t" and e.df == 2 and e.paired
    assert e.effect == pytest.approx(mean)
    assert (e.ci_low, e.ci_high) == pytest.approx((mean - half, mean + half), abs=1e-6)
    # wider than the range of the three differences: a percentile bootstrap never is
    assert e.ci_low < min(d) and e.ci_high > max(d)
    boot = bootstrap_paired(paper, alt)
    assert min(d) - 1e-12 <= boot.ci_low and boot.ci_high <= max(d) + 1e-12
    assert e.n_paper == N_MIN and verdict(e) == "inconclusive"
    assert verdict(t_paired(paper[:2], alt[:2])) == "not enough trials"
    clear = t_paired([0.80, 0.82, 0.79], [0.70, 0.71, 0.70])
    assert verdict(clear) == "confirmed"  # n = N_MIN gives a verdict when the pairs agree
    one = t_paired([0.5], [0.4])
    assert one.effect == pytest.approx(0.1) and one.ci_low is None


def test_welch_interval_matches_scipy():
    from scipy import stats as sps

    paper = [0.62, 0.55, 0.71]  # n = N_MIN
    alt = [0.41, 0.52, 0.30, 0.47, 0.33, 0.50]
    ref = sps.ttest_ind(paper, alt, equal_var=False).confidence_interval(0.95)
    e = welch_diff(paper, alt)
    assert e.method == "welch t" and e.n_paper == N_MIN and e.n_alt == 6
    assert (e.ci_low, e.ci_high) == pytest.approx((ref.low, ref.high), abs=1e-9)


def test_search_interval_switches_to_bootstrap_at_n_bootstrap():
    rng = np.random.default_rng(0)
    small = search_diff(rng.normal(1, 1, N_BOOTSTRAP - 1), rng.normal(0, 1, 200))
    large = search_diff(rng.normal(1, 1, N_BOOTSTRAP), rng.normal(0, 1, N_BOOTSTRAP))
    assert small.method == "welch t" and large.method == "bootstrap"


def test_verdict_at_exactly_n_min():
    at = Effect(N_MIN, N_MIN, 0.6, 0.4, 0.2, 0.1, 0.3)
    below = Effect(N_MIN, N_MIN - 1, 0.6, 0.4, 0.2, 0.1, 0.3)
    assert verdict(at) == "confirmed"
    assert verdict(below) == "not enough trials"
    assert verdict(Effect(N_MIN, N_MIN, 0.4, 0.6, -0.2, -0.3, -0.1)) == "contradicted"


def test_t_interval_coverage_is_95_percent_at_three_seeds():
    """Over many 3-seed experiments the paired t-interval covers the true effect ~95% of the
    time; the percentile bootstrap over the same three values covers far less."""
    rng = np.random.default_rng(11)
    reps, true = 2000, 0.05
    t_hits = boot_hits = 0
    for r in range(reps):
        alt = rng.normal(0.5, 0.05, 3)
        paper = alt + true + rng.normal(0, 0.03, 3)
        e = t_paired(paper, alt)
        t_hits += e.ci_low <= true <= e.ci_high
        b = bootstrap_paired(paper, alt, n_resamples=200, seed=r)
        boot_hits += b.ci_low <= true <= b.ci_high
    assert 0.93 <= t_hits / reps <= 0.97
    assert boot_hits / reps < 0.85


# -- the flip rate, pinned against a hand-written Monte Carlo ------------------------------------


def _rerun_rate(effect, *, higher_is_better, draws=200_000, seed=0):
    """Re-run the experiment ``draws`` times with the true effect at the estimate and the
    noise at the observed level, apply the verdict rule to each re-run's interval and count
    verdicts that differ from the observed one."""
    from scipy.stats import norm

    rng = np.random.default_rng(seed)
    half = (effect.ci_high - effect.ci_low) / 2
    d = effect.effect
    if effect.df is None:  # the normal limit: the observed interval, shifted by a normal error
        se = half / norm.ppf(0.975)
        shift = rng.normal(0.0, se, draws)
        low, high = effect.ci_low + shift, effect.ci_high + shift
    else:
        q = t_quantile(0.95, effect.df)
        se = half / q
        mean = rng.normal(d, se, draws)
        s = se * np.sqrt(rng.chisquare(effect.df, draws) / effect.df)
        low, high = mean - q * s, mean + q * s
    if not higher_is_better:
        low, high = -high, -low
    rerun = np.where(low > 0, "confirmed", np.where(high < 0, "contradicted", "inconclusive"))
    return float(np.mean(rerun != verdict(effect, higher_is_better=higher_is_better)))


def _effect_at(t, df, *, se=0.02, method="paired t", n=10):
    q = t_quantile(0.95, df) if df is not None else 1.959964
    d = t * se
    return Effect(n, n, 0.5 + d, 0.5, d, d - q * se, d + q * se, method=method, df=df)


@pytest.mark.parametrize(
    ("t", "df", "higher_is_better"),
    [
        (6.0, 2, True),  # confirmed, 3 seeds
        (4.5, 2, True),  # just past the edge (t(0.975, 2) = 4.303)
        (0.0, 2, True),  # an estimate of 0
        (2.4, 8, True),  # just past the edge (2.306)
        (2.2, 8, True),  # just inside it: inconclusive
        (-3.0, 6, True),  # contradicted
        (-3.0, 6, False),  # the same interval when lower is better: confirmed
        (2.0, 6, False),  # inconclusive, lower is better
        (12.0, 4, False),  # contradicted and far from the edge
    ],
)
def test_flip_rate_matches_a_monte_carlo_of_reruns(t, df, higher_is_better):
    e = _effect_at(t, df)
    rate = flip_rate(e, higher_is_better=higher_is_better)
    mc = _rerun_rate(e, higher_is_better=higher_is_better)
    assert rate is not None
    assert rate == pytest.approx(mc, abs=0.006)  # 200,000 draws: SE ≤ 0.0012
    # Which side is better only names the verdicts: the chance of another one is the same.
    assert rate == pytest.approx(flip_rate(e, higher_is_better=not higher_is_better))


def test_flip_rate_of_a_bootstrap_interval_is_the_normal_limit():
    for t in (3.0, 2.0, 0.0, -2.1):
        e = _effect_at(t, None, method="bootstrap", n=40)
        mc = _rerun_rate(e, higher_is_better=True)
        assert flip_rate(e) == pytest.approx(mc, abs=0.006)
    real = search_diff(list(np.linspace(0.5, 0.9, 30)), list(np.linspace(0.45, 0.8, 30)))
    assert real.method == "bootstrap" and flip_rate(real) is not None


def test_a_lopsided_bootstrap_interval_keeps_its_shape():
    """A percentile interval over skewed scores (many failed trials scored 0) is lopsided.
    Its rate shifts the observed interval rather than re-centring it on the estimate, so a
    confirmed verdict just past its edge keeps its own side (rate under 50%; re-centred on
    +0.102 this interval gave 54.6%)."""
    from scipy.stats import norm

    e = Effect(30, 30, 0.302, 0.2, 0.102, 0.0017, 0.218, method="bootstrap")
    assert verdict(e) == "confirmed"
    se = (0.218 - 0.0017) / 2 / norm.ppf(0.975)
    assert flip_rate(e) == pytest.approx(1 - norm.cdf(0.0017 / se), rel=1e-9)  # 0.488
    assert flip_rate(e) < 0.5
    assert flip_rate(e) == pytest.approx(_rerun_rate(e, higher_is_better=True), abs=0.006)
    # Lower is better: the same interval is contradicted, with the same rate.
    assert verdict(e, higher_is_better=False) == "contradicted"
    assert flip_rate(e, higher_is_better=False) == pytest.approx(flip_rate(e))
    # Inconclusive and lopsided: a re-run lands above with Φ(low/se), below with Φ(−high/se).
    wide = dataclasses.replace(e, ci_low=-0.01, ci_high=0.3)
    se = 0.31 / 2 / norm.ppf(0.975)
    hand = norm.cdf(-0.01 / se) + norm.cdf(-0.3 / se)
    assert flip_rate(wide) == pytest.approx(hand, rel=1e-9)
    assert flip_rate(wide) == pytest.approx(_rerun_rate(wide, higher_is_better=True), abs=0.006)


def test_no_normal_limit_for_a_bootstrap_over_fewer_than_30_a_side():
    """Over 3 seeds a percentile bootstrap is far too narrow (see the module docstring); a
    rate from it would be near 0 where the paired t gives about 20%."""
    paper, alt = [0.8, 0.9, 0.75], [0.6, 0.65, 0.62]
    assert verdict(bootstrap_paired(paper, alt)) == "confirmed"
    assert flip_rate(bootstrap_paired(paper, alt)) is None
    assert flip_rate(_effect_at(3.0, None, method="bootstrap", n=29)) is None
    assert (
        flip_rate(
            dataclasses.replace(_effect_at(3.0, None, method="bootstrap"), n_paper=30, n_alt=29)
        )
        is None
    )
    assert flip_rate(_effect_at(3.0, None, method="bootstrap", n=30)) is not None


def test_flip_rate_landmarks():
    """An estimate of 0 flips when a re-run lands past either edge (5%); one exactly at the
    edge about half the time; a strong effect almost never."""
    assert flip_rate(_effect_at(0.0, 1e6)) == pytest.approx(0.05, abs=1e-4)
    assert flip_rate(_effect_at(1.96, 1e6)) == pytest.approx(0.5, abs=0.01)
    assert 0.3 < flip_rate(_effect_at(4.31, 2)) < 0.5  # at df 2 a re-run's t skews upwards
    assert flip_rate(_effect_at(20.0, 8)) < 1e-6
    assert flip_rate(_effect_at(3.0, 8)) >= UNSTABLE_RATE  # confirmed, but near its edge


def test_no_flip_rate_without_a_verdict_an_interval_width_or_df():
    assert flip_rate(_effect_at(5.0, 2, n=2)) is None  # not enough trials
    flat = t_paired([0.7, 0.7, 0.7], [0.6, 0.6, 0.6])  # no variance: no width
    assert verdict(flat) == "inconclusive" and flip_rate(flat) is None
    assert flip_rate(_effect_at(5.0, None, method="welch t")) is None  # a t without df
    assert flip_rate(Effect(3, 3, 0.5, None, None, None, None)) is None


def test_flip_rate_at_three_paired_seeds():
    e = t_paired([0.8, 0.9, 0.75], [0.6, 0.65, 0.62])
    assert verdict(e) == "confirmed" and e.df == 2
    assert flip_rate(e) == pytest.approx(_rerun_rate(e, higher_is_better=True), abs=0.006)
