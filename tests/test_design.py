"""Designed experiments: the designs' structure, the sampler inside Optuna, and the analysis
of a designed study on planted effects (no training) and on a tiny real study (training)."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState

from ganarch.analysis import CLAIMS, rules_table
from ganarch.analysis.claims import resolve
from ganarch.analysis.designed import fit_design, fit_main_effects, reseed_flips
from ganarch.errors import GanarchError
from ganarch.search.design import (
    CLAIM_TOGGLES,
    DESIGN_ATTR,
    RUN_ATTR,
    DesignSampler,
    Factor,
    design_for,
    factors_of,
    make_design,
)
from ganarch.search.space import load_space

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _factors(k: int) -> list[Factor]:
    return [Factor(f"x{i}", None, {f"x{i}": "a"}, {f"x{i}": "b"}) for i in range(k)]


def _interaction_columns(m: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
    return {(i, j): m[:, i] * m[:, j] for i, j in itertools.combinations(range(m.shape[1]), 2)}


# -- the designs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "k", "runs", "resolution"),
    [
        ("fractional", 7, 16, 4),
        ("fractional", 6, 16, 4),
        ("fractional", 5, 16, 5),
        ("fractional", 3, 8, None),  # small enough for every combination
        ("fractional32", 7, 32, 4),
        ("fractional32", 6, 32, 6),
        ("factorial", 7, 128, None),
    ],
)
def test_designs_are_orthogonal_with_the_stated_resolution(name, k, runs, resolution):
    d = make_design(name, _factors(k))
    m = d.matrix
    assert m.shape == (runs, k) and set(np.unique(m)) == {-1, 1}
    assert len({tuple(r) for r in m}) == runs  # no run twice
    assert (m[0] == 1).all()  # run 0 is the paper's side of everything
    assert np.array_equal(m.T @ m, runs * np.eye(k, dtype=int))  # balanced and orthogonal
    assert d.resolution == resolution
    inter = _interaction_columns(m)
    # resolution IV or more, read off the matrix itself: no main effect column equals (±) a
    # two-factor interaction column, so no main effect is aliased with one
    for col in inter.values():
        assert (np.abs(m.T @ col) < runs).all()
        assert (m.T @ col == 0).all() if resolution is None or resolution >= 4 else True
    # the alias chains the design reports are exactly the interaction columns that coincide
    letters = d.letters
    for chain in d.two_factor_chains():
        cols = [inter[(letters.index(a), letters.index(b))] for a, b in chain]
        for c in cols[1:]:
            assert np.array_equal(np.abs(cols[0] @ c), runs)
    if resolution is None or resolution >= 5:
        assert all(len(c) == 1 for c in d.two_factor_chains())  # 2FIs estimable apart


def test_the_seven_claims_get_the_2_7_3_design():
    d = design_for(load_space("claims"), "fractional")
    assert d.label() == "2^(7-3) fractional factorial, resolution IV, 16 runs"
    assert d.generators == ("E=ABC", "F=BCD", "G=ACD")
    assert [f.claim for f in d.factors] == [1, 2, 3, 4, 5, 6, 7]
    assert all(len(a) == 3 for a in d.aliases("A"))  # main effects: 3FI aliases only
    assert sorted(len(c) for c in d.two_factor_chains()) == [3] * 7  # 21 2FIs in 7 chains
    with pytest.raises(GanarchError, match="at most 8"):
        make_design("fractional", _factors(9))
    with pytest.raises(GanarchError, match="unknown design"):
        make_design("plackett", _factors(3))


def test_claim_levels_are_the_paper_and_the_ablation():
    """Each claim's +1 level is the paper's values and its -1 level the one change `ganarch
    ablate` makes, so the claims read them as the paper's and the alternative side."""
    by_claim = {f.claim: f for f in factors_of(load_space("claims"))}
    for claim in CLAIMS:
        factor = by_claim[claim.id]
        assert set(claim.alternative) <= set(factor.low) <= set(CLAIM_TOGGLES[claim.id])
        assert set(CLAIM_TOGGLES[claim.id]) <= set(claim.params)
        assert {k: factor.low[k] for k in claim.alternative} == dict(claim.alternative)
        assert claim.side(factor.high) == "paper"
        assert claim.side(factor.low) == "alternative"
        assert all(resolve({})[k] == v for k, v in factor.high.items())


@pytest.mark.parametrize(
    ("choices", "message"),
    [
        ("lr = { low = 1e-4, high = 1e-3 }", "not a range"),
        ('d_norm = ["batchnorm", "none", "layernorm"]', "not 3 values"),
        ('d_norm = ["layernorm", "none"]', "must include the paper's 'batchnorm'"),
    ],
)
def test_a_space_a_design_cannot_use_is_refused(tmp_path, choices, message):
    path = tmp_path / "bad.toml"
    path.write_text(f'template = "dcgan"\nimage_size = 16\n[choices]\n{choices}\n')
    with pytest.raises(GanarchError, match=message):
        design_for(load_space(path), "fractional")


# -- the sampler inside Optuna ---------------------------------------------------------------------


def _objective(space, effects, noise, rng, seeds=1, interaction=0.0):
    """Synthetic responses: half an effect up or down per claim level, plus a 3×4 interaction
    (aliased with other two-factor interactions, never with a main effect) and seed noise."""

    def objective(trial):
        choices = space.suggest(trial)
        level = {c.id: 1 if c.side(choices) == "paper" else -1 for c in CLAIMS}
        level[4] = 1 if not choices["g_output_norm"] else -1  # the design's level, even if moot
        mean = 0.5 + sum(effects[i] / 2 * level[i] for i in effects)
        mean += interaction * level[3] * level[4]
        values = [mean + rng.normal(0, noise) for _ in range(seeds)]
        trial.set_user_attr("choices", resolve(choices))
        trial.set_user_attr("seed_objectives", values)
        return float(np.mean(values))

    return objective


def _designed_study(name="fractional", **kw):
    space = load_space("claims")
    sampler = DesignSampler(design_for(space, name))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.set_user_attr("ganarch", {"data": "synthetic", "steps": 0, "seeds": kw.get("seeds", 1)})
    study.optimize(_objective(space, **kw), n_trials=sampler.design.runs)
    return study, sampler


PLANTED = {1: 0.0, 2: -0.08, 3: 0.10, 4: 0.0, 5: 0.0, 6: 0.06, 7: 0.12}


def test_the_sampler_runs_each_design_point_once_and_the_analysis_recovers_planted_effects():
    rng = np.random.default_rng(0)
    study, sampler = _designed_study(
        effects=PLANTED, noise=0.01, rng=rng, seeds=3, interaction=0.02
    )
    assert sampler.is_exhausted(study)
    runs = sorted(t.user_attrs[RUN_ATTR] for t in study.trials)
    assert runs == list(range(16))
    for t in study.trials:  # each trial trained exactly its run's levels
        assert {k: t.params[k] for k in sampler.design.choices(t.user_attrs[RUN_ATTR])} == (
            sampler.design.choices(t.user_attrs[RUN_ATTR])
        )
    assert study.user_attrs[DESIGN_ATTR]["generators"] == ["E=ABC", "F=BCD", "G=ACD"]
    table = rules_table(study)
    assert table.evidence.startswith("designed study (controlled): 2^(7-3)")
    assert "3 paired seeds" in table.evidence
    assert any("8 residual df" in n for n in table.notes)
    chains = next(n for n in table.notes if n.startswith("two-factor interactions"))
    assert "1×7 = 2×6 = 3×4" in chains  # the planted interaction's alias chain is named
    rows = {r.claim.id: r for r in table.rows}
    for cid, true in PLANTED.items():
        e = rows[cid].effect
        assert e.n_paper == e.n_alt == 8 and e.method == "least squares t" and e.df == 8
        assert e.ci_low <= true <= e.ci_high  # unbiased despite the planted interaction
        want = "confirmed" if true > 0 else "contradicted" if true < 0 else None
        if want:
            assert rows[cid].verdict == want and math.copysign(1, e.effect) == math.copysign(
                1, true
            )
        assert rows[cid].flips is not None and rows[cid].flips[1] == 3
    assert rows[3].verdict == "confirmed" and rows[2].verdict == "contradicted"
    assert any("claim 4: in 8 of 16 runs" in n for n in table.notes)  # no norm: moot toggle
    assert table.to_dict()["design"]["resolution"] == 4


def test_main_effects_are_exact_without_noise_even_with_interactions():
    """Resolution IV: a two-factor interaction moves no main effect estimate."""
    d = make_design("fractional", _factors(7))
    x = d.matrix
    y = 1.0 + 0.2 * x[:, 0] - 0.1 * x[:, 3] + 0.3 * x[:, 2] * x[:, 5]  # + a 2FI
    fit = fit_main_effects(x, y)
    got = [e.effect for e in fit.effects]
    assert got == pytest.approx([0.4, 0, 0, -0.2, 0, 0, 0], abs=1e-12)


def test_least_squares_intervals_cover_95_percent():
    """Planted effects with noise: the 95% t-intervals (8 residual df) cover the truth ~95%
    of the time for every claim (a 90% interval would cover ~90%)."""
    d = make_design("fractional", _factors(7))
    x = d.matrix
    true = np.array([0.0, -0.08, 0.10, 0.0, 0.0, 0.06, 0.12])
    rng = np.random.default_rng(1)
    reps, hits, signs = 1500, 0, 0
    for _ in range(reps):
        y = 0.5 + x @ (true / 2) + rng.normal(0, 0.03, len(x))
        fit = fit_main_effects(x, y)
        for e, t in zip(fit.effects, true, strict=True):
            hits += e.ci_low <= t <= e.ci_high
            signs += t != 0 and e.effect * t > 0
    assert 0.935 <= hits / (reps * 7) <= 0.965
    assert signs / (reps * 4) > 0.99  # the planted effects' signs are recovered
    # the interval by hand: effect ± t(0.975, 8) · 2 · sqrt(s² / 16)
    y = 0.5 + x @ (true / 2) + rng.normal(0, 0.03, len(x))
    fit = fit_main_effects(x, y)
    coef, *_ = np.linalg.lstsq(np.column_stack([np.ones(16), x]), y, rcond=None)
    s2 = float(((y - np.column_stack([np.ones(16), x]) @ coef) ** 2).sum()) / 8
    half = 2.306004 * 2 * math.sqrt(s2 / 16)
    e = fit.effects[2]
    assert (e.ci_low, e.ci_high) == pytest.approx((e.effect - half, e.effect + half), abs=1e-6)


def test_reseeding_flips_count_verdicts_that_change():
    d = make_design("fractional", _factors(3))  # 8 runs, full factorial
    from ganarch.analysis.designed import DesignRun

    x = d.matrix
    # seed 0 shows a strong effect of factor 0, seed 1 none: the verdict depends on the seed
    seeds = [
        (0.5 + 0.2 * a + 0.001 * i, 0.5 + 0.001 * ((i * 7) % 5)) for i, a in enumerate(x[:, 0])
    ]
    runs = [DesignRun(i, i, {}, float(np.mean(s)), s) for i, s in enumerate(seeds)]
    names = ["a", "b", "c"]
    flips = reseed_flips(d, runs, names)
    assert flips is not None and flips[0][1] == 2 and flips[0][0] >= 1
    assert reseed_flips(d, [DesignRun(i, i, {}, 0.5, None) for i in range(8)], names) is None


def test_a_verdict_that_flips_on_reseeding_is_shown_unstable(capsys, monkeypatch):
    """Claim 7 is strong in seed 0 and absent in seed 1: the full fit may call it, but a refit
    on seed 1 alone does not; the table and the report say "(unstable)", --json keeps both."""
    from ganarch.cli.analysis import print_table

    space = load_space("claims")
    study = optuna.create_study(
        direction="maximize", sampler=DesignSampler(design_for(space, "fractional"))
    )
    study.set_user_attr("ganarch", {"data": "synthetic", "steps": 0, "seeds": 2})

    def objective(trial):
        choices = space.suggest(trial)
        paper = CLAIMS[6].side(choices) == "paper"
        wobble = 0.001 * (trial.number % 3)
        values = [0.5 + (0.2 if paper else -0.2) + wobble, 0.5 + 0.002 * (trial.number % 5)]
        trial.set_user_attr("choices", resolve(choices))
        trial.set_user_attr("seed_objectives", values)
        return float(np.mean(values))

    study.optimize(objective, n_trials=16)
    table = rules_table(study)
    row = {r.claim.id: r for r in table.rows}[7]
    assert row.flips is not None and row.flips[0] >= 1
    assert row.verdict == "confirmed" and row.stable is False
    assert row.shown_verdict == "confirmed (unstable)"
    d = row.to_dict()
    assert (d["verdict"], d["stable"], d["shown_verdict"]) == (
        "confirmed",
        False,
        "confirmed (unstable)",
    )
    # A confirmed or contradicted verdict is stable with no seed flip and a flip rate under
    # UNSTABLE_RATE; either one marks it. An inconclusive verdict is never marked.
    called = [r for r in table.rows if r.verdict in ("confirmed", "contradicted")]
    steady = [r for r in called if r.flips[0] == 0 and r.flip_rate < 0.2]
    assert all(r.shown_verdict == r.verdict and r.stable for r in steady)
    rare = [r for r in called if r.flips[0] == 0 and r.flip_rate >= 0.2]
    assert all(r.stable is False and "(unstable)" in r.shown_verdict for r in rare)
    unsure = [r for r in table.rows if r.verdict == "inconclusive"]
    assert unsure and all(r.stable is None and r.shown_verdict == r.verdict for r in unsure)
    for flips, rate in (((1, 2), 0.0), ((0, 2), 0.4)):  # a seed flip, or a high rate
        shaky = dataclasses.replace(unsure[0], flips=flips, flip_rate=rate)
        assert shaky.shown_verdict == "inconclusive" and shaky.stable is None
        assert shaky.to_dict()["flip_rate"] == rate  # shown in the column, but no mark
        called_shaky = dataclasses.replace(shaky, verdict="confirmed")
        assert called_shaky.shown_verdict == "confirmed (unstable)"
    monkeypatch.setenv("COLUMNS", "200")
    print_table(table)
    out = capsys.readouterr()
    assert "confirmed (unstable)" in out.out
    assert "half the data" in out.out + out.err


def test_an_incomplete_design_gives_provisional_verdicts_and_names_failed_runs():
    """Two runs missing: verdicts are marked provisional, the notes name the missing runs and
    no longer promise main effects free of interactions; a run scored 0 after a failure is
    named with its reason."""
    space = load_space("claims")
    study = optuna.create_study(
        direction="maximize", sampler=DesignSampler(design_for(space, "fractional"))
    )
    study.set_user_attr("ganarch", {"data": "synthetic", "steps": 0, "seeds": 1})
    good = _objective(space, effects=PLANTED, noise=0.01, rng=np.random.default_rng(2))

    def objective(trial):
        if trial.number == 5:  # what the search records for an out-of-memory trial
            space.suggest(trial)
            trial.set_user_attr("failure", "out of memory")
            return 0.0
        if trial.number in (9, 12):
            space.suggest(trial)
            raise RuntimeError("interrupted")
        return good(trial)

    study.optimize(objective, n_trials=16, catch=(RuntimeError,))
    first = study.trials[0]  # a stale-judged trial that did finish: run 0 trained twice
    study.add_trial(
        optuna.trial.create_trial(
            params=first.params,
            distributions=first.distributions,
            value=0.1,
            user_attrs={**first.user_attrs},
        )
    )
    space.suggest(study.ask())  # a trial still running (another machine's): run 14 is held
    table = rules_table(study)
    notes = " | ".join(table.notes)
    assert (
        "trained more than once, the first result used: run 0 (trials 0, 16; trial 0 used)" in notes
    )
    assert "held by running trials" in notes and "run 14 (trial 17)" in notes
    # a failed trial frees its run and the next trial takes it: the last two runs are missing
    assert "14 of 16 runs finished (missing: runs 14, 15)" in notes and "provisional" in notes
    assert "aliasing no longer holds" in notes and "are free of" not in notes
    assert "run 5 (trial 5: out of memory)" in notes
    judged = [r for r in table.rows if r.verdict != "not enough trials"]
    assert judged and all(r.provisional and "provisional" in r.shown_verdict for r in judged)
    assert all(r.to_dict()["provisional"] for r in judged)
    complete, _ = _designed_study(effects=PLANTED, noise=0.01, rng=np.random.default_rng(2))
    full = rules_table(complete)
    assert not any(r.provisional for r in full.rows)
    assert any("are free of two-factor interactions" in n for n in full.notes)


def test_a_queued_trial_whose_params_fit_no_run_is_refused_not_guessed():
    space = load_space("claims")
    study = optuna.create_study(
        direction="maximize", sampler=DesignSampler(design_for(space, "fractional"))
    )
    study.enqueue_trial({"g_dense_layers": 7})  # no run of the design has 7 dense layers
    with pytest.raises(GanarchError, match=r"trial 0: its queued params .* fit no run"):
        study.ask()
    bad = study.trials[0]
    assert bad.state == TrialState.FAIL and RUN_ATTR not in bad.user_attrs
    trial = study.ask()  # the study goes on: the next trial takes the first free run
    assert trial.user_attrs[RUN_ATTR] == 0


def test_resume_and_failed_trials_keep_the_design_whole():
    """An interrupted trial frees its run; a queued retry (its params) holds it; a new sampler
    (a resumed process) continues where the study stands."""
    space = load_space("claims")
    design = design_for(space, "fractional")
    study = optuna.create_study(direction="maximize", sampler=DesignSampler(design))
    rng = np.random.default_rng(3)
    objective = _objective(space, effects=PLANTED, noise=0.01, rng=rng)
    study.optimize(objective, n_trials=3)

    def interrupted(trial):
        space.suggest(trial)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        study.optimize(interrupted, n_trials=1)
    failed = study.trials[-1]
    assert failed.state == TrialState.FAIL and failed.user_attrs[RUN_ATTR] == 3
    # what the search does with an interrupted trial; here with only the params it set before
    # the interrupt: the retry still takes the free run they fit, not a taken one
    study.enqueue_trial({"g_dense_layers": failed.params["g_dense_layers"]})
    resumed = optuna.load_study(
        study_name=study.study_name, storage=study._storage, sampler=DesignSampler(design)
    )
    resumed.optimize(objective, n_trials=13)
    done = [t for t in resumed.trials if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs[RUN_ATTR] for t in done) == list(range(16))
    assert resumed.sampler.is_exhausted(resumed)


def _worker_config(tmp_path, sampler="fractional", trials=None):
    from ganarch.search.api import make_config

    return make_config(
        space="claims",
        data="digits",
        sampler=sampler,
        trials=trials,
        storage=str(tmp_path / "s.journal"),
        study="designed",
        out=str(tmp_path / "runs"),
    )


class _NoTraining:
    """Stands in for the trial runner in the search's worker loop: no training, a score."""

    def __init__(self, space, settings, *, on_trial_start=None, **kw):
        self.space, self.on_trial_start = space, on_trial_start

    def __call__(self, trial):
        if self.on_trial_start is not None:
            self.on_trial_start(trial)
        self.space.suggest(trial)
        return 0.5


def test_a_queued_retry_of_the_last_run_is_run_by_the_worker_loop(tmp_path, monkeypatch):
    """Ctrl-C during the design's last run queues it again; resuming must train it (the
    worker loop stopped at once before: the queued retry made the design look exhausted)."""
    from ganarch.search import study as study_module

    config = _worker_config(tmp_path)
    study = study_module.prepare_study(config)
    study = optuna.load_study(
        study_name="designed", storage=study._storage, sampler=make_design_sampler(config)
    )
    for i in range(16):
        trial = study.ask()
        params = config.space.suggest(trial)
        if i < 15:
            study.tell(trial, 0.5)
        else:  # what the trial runner does on Ctrl-C: FAIL, then queue the same params
            study.tell(trial, state=TrialState.FAIL)
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
    assert params is not None and not study.sampler.is_exhausted(study)
    monkeypatch.setattr(study_module, "TrialRunner", _NoTraining)
    ran = study_module.run_worker(config, 0, engine=object())
    assert ran == 1
    done = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs[RUN_ATTR] for t in done) == list(range(16))
    assert study.sampler.is_exhausted(study)


def test_trials_default_to_the_design_size_and_fewer_are_refused(tmp_path):
    """A prefix of a design is unbalanced (claims constant, verdicts not estimable): the
    budget of a designed study is the whole design, from the CLI and from Python alike."""
    assert _worker_config(tmp_path).trials == 16
    assert _worker_config(tmp_path, sampler="fractional32").trials == 32
    assert _worker_config(tmp_path, sampler="tpe").trials == 20
    assert _worker_config(tmp_path, trials=40).trials == 40  # more: stops at the design's end
    with pytest.raises(GanarchError, match=r"--trials 10: the fractional design .* has 16 runs"):
        _worker_config(tmp_path, trials=10)


def test_the_command_line_refuses_a_budget_below_the_design(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from ganarch.cli import app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app,
        [
            "search",
            "--space",
            "claims",
            "--sampler",
            "fractional32",
            "--trials",
            "20",
            "--steps",
            "1",
        ],
    )
    assert result.exit_code == 2
    assert "has 32 runs" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "ganarch.journal").exists()


@pytest.mark.parametrize("other", ["fractional32", "tpe"])
def test_resuming_with_another_design_is_refused(tmp_path, other):
    """Run numbers of the 16-run design mean other rows in the 32-run one: refused, naming
    the sampler to resume with, before anything runs (the CLI's exit 2)."""
    from ganarch.search.study import prepare_study

    config = _worker_config(tmp_path)
    study = optuna.load_study(
        study_name="designed",
        storage=prepare_study(config)._storage,
        sampler=make_design_sampler(config),
    )
    trial = study.ask()
    config.space.suggest(trial)
    study.tell(trial, 0.5)
    prepare_study(config)  # the same design resumes
    with pytest.raises(GanarchError, match=r"was run with --sampler fractional \(2\^\(7-3\)"):
        prepare_study(_worker_config(tmp_path, sampler=other, trials=40))
    # and from Optuna directly: the sampler refuses to add another design's runs
    other_sampler = DesignSampler(design_for(config.space, "fractional32"))
    study = optuna.load_study(study_name="designed", storage=study._storage, sampler=other_sampler)
    with pytest.raises(GanarchError, match="resume it with --sampler fractional"):
        study.ask()


def make_design_sampler(config):
    return DesignSampler(design_for(config.space, config.sampler))


# -- a tiny real designed study ------------------------------------------------------------------


@pytest.mark.slow
def test_a_tiny_real_designed_study_end_to_end(tmp_path, tmp_path_factory, monkeypatch):
    from ganarch.search import SearchConfig, TrialSettings, run_search
    from ganarch.search.storage import open_storage

    monkeypatch.setenv("GANARCH_CACHE", str(tmp_path_factory.getbasetemp() / "ganarch-cache"))
    torch.set_num_threads(1)
    path = tmp_path / "two.toml"
    path.write_text(
        'template = "dcgan"\nimage_size = 8\nwidth = 8\nlatent_dim = 8\n'
        "[fixed]\nbatch_size = 32\n[choices]\n"
        'g_upsample = ["tconv", "nearest_conv"]\nd_activation = ["leaky_relu", "relu"]\n'
        "beta1 = [0.5, 0.9]\n"
    )
    config = SearchConfig(
        space=load_space(path),
        settings=TrialSettings(
            data="digits",
            steps=8,
            seeds=2,
            device="cpu",
            out=str(tmp_path / "runs"),
            eval_every=4,
            n_eval=100,
        ),
        study_name="designed",
        storage=str(tmp_path / "s.journal"),
        trials=10,  # more than the design holds: the study stops when the design is done
        sampler="factorial",
        pruner="none",
    )
    summary = run_search(config)
    assert summary.counts == {"COMPLETE": 8}
    study = optuna.load_study(study_name="designed", storage=open_storage(config.storage))
    for t in study.trials:
        assert len(t.user_attrs["seed_objectives"]) == 2
        assert all(0.0 <= v <= 1.0 for v in t.user_attrs["seed_objectives"])
    table = rules_table(study)
    rows = {r.claim.id: r for r in table.rows}
    assert "full 2^3 factorial, 8 runs" in table.evidence and "2 paired seeds" in table.evidence
    for cid in (2, 6, 7):
        assert rows[cid].effect.n_paper == rows[cid].effect.n_alt == 4
        assert rows[cid].effect.df == 4 and rows[cid].verdict in (
            "confirmed",
            "contradicted",
            "inconclusive",
        )
        assert rows[cid].flips is not None and rows[cid].flips[1] == 2
    for cid in (1, 3, 4, 5):
        assert rows[cid].verdict == "not enough trials"
        assert rows[cid].importance_note == "not in the design"


def test_interactions_of_the_32_run_design_are_recovered():
    """A planted 1×2 interaction (clear of others in the 32-run design) and a 3×5 one (sharing
    its column with 6×7) come out as the two largest chains, with the right sign."""
    d = make_design("fractional32", _factors(7))
    x = d.matrix
    rng = np.random.default_rng(5)
    y = 0.5 + 0.1 * x[:, 2] + 0.04 * x[:, 0] * x[:, 1] - 0.05 * x[:, 2] * x[:, 4]
    y = y + rng.normal(0, 0.005, len(x))
    names = [str(i + 1) for i in range(7)]
    fit = fit_design(d, range(32), y, names)
    inter = fit.interactions
    assert inter is not None and inter[0].effect.df == fit.main.df == 32 - 1 - 7 - 18
    main = fit_main_effects(x, y)  # the same main effects, with the interactions out of the error
    assert [e.effect for e in fit.main.effects] == pytest.approx([e.effect for e in main.effects])
    assert fit.main.effects[2].ci_high - fit.main.effects[2].ci_low < (
        main.effects[2].ci_high - main.effects[2].ci_low
    )
    top = {i.chain: i.effect for i in inter[:2]}
    assert set(top) == {("1×2",), ("3×5", "6×7")}
    assert top[("1×2",)].ci_low <= 0.08 <= top[("1×2",)].ci_high  # effect = 2 × coefficient
    assert top[("3×5", "6×7")].ci_low <= -0.10 <= top[("3×5", "6×7")].ci_high
    small = fit_design(make_design("fractional", _factors(7)), range(16), y[:16], names)
    assert small.interactions is None and small.main.df == 8


def test_the_largest_interactions_are_labelled_unadjusted_with_bonferroni_in_json():
    """The notes show the 3 largest of 18 chains, picked after the fact: their intervals are
    labelled unadjusted; --json has all 18 with simultaneous (Bonferroni) intervals too."""
    from scipy.stats import t

    study, _ = _designed_study(
        "fractional32", effects=PLANTED, noise=0.01, rng=np.random.default_rng(4), seeds=1
    )
    table = rules_table(study)
    note = next(n for n in table.notes if n.startswith("largest two-factor"))
    assert "unadjusted 95% t, 6 df" in note and "selected by size from 18" in note
    inter = table.to_dict()["design"]["interactions"]
    assert len(inter) == 18
    ratio = t.ppf(1 - 0.025 / 18, 6) / t.ppf(0.975, 6)
    for i in inter:
        assert i["ci_high_bonferroni"] - i["ci_low_bonferroni"] == pytest.approx(
            (i["ci_high"] - i["ci_low"]) * ratio
        )
    assert next(n for n in table.notes if n.startswith("effects:")).count("6 residual df") == 1


@pytest.mark.slow
def test_a_designed_search_on_the_command_line_ends_with_the_rules_table(
    tmp_path, tmp_path_factory, monkeypatch
):
    from typer.testing import CliRunner

    from ganarch.cli import app

    monkeypatch.setenv("GANARCH_CACHE", str(tmp_path_factory.getbasetemp() / "ganarch-cache"))
    monkeypatch.setenv("COLUMNS", "150")
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    (tmp_path / "three.toml").write_text(
        'template = "dcgan"\nimage_size = 8\nwidth = 8\nlatent_dim = 8\n'
        "[fixed]\nbatch_size = 32\n[choices]\n"
        'g_upsample = ["tconv", "nearest_conv"]\nd_activation = ["leaky_relu", "relu"]\n'
        "beta1 = [0.5, 0.9]\n"
    )
    args = ["search", "--space", "three.toml", "--data", "digits", "--steps", "4"]
    args += ["--sampler", "factorial", "--trials", "8", "--device", "cpu", "--quiet"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "pruning is off" in r.output  # the default pruner would cut design runs
    table = r.output[r.output.index("Rules of Radford") :]
    assert "designed study (controlled): full 2^3 factorial, 8 runs" in " ".join(table.split())
    for claim in ("strided conv", "LeakyReLU in D", "Adam beta1 0.5"):
        line = next(x for x in table.splitlines() if claim in x)
        assert "4/4" in line and "not enough trials" not in line
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    (other / "range.toml").write_text(
        'template = "dcgan"\nimage_size = 8\n[choices]\nlr = { low = 1e-4, high = 1e-3 }\n'
    )
    bad = CliRunner().invoke(app, ["search", "--space", "range.toml", "--sampler", "fractional"])
    assert bad.exit_code == 2 and "two-level design" in bad.output
    assert list(other.iterdir()) == [other / "range.toml"]  # refused before anything is written


def test_the_report_of_a_designed_study_calls_its_effects_controlled(tmp_path):
    from ganarch.analysis import write_report

    study, _ = _designed_study(effects=PLANTED, noise=0.01, rng=np.random.default_rng(2))
    html = write_report(study, tmp_path / "report").read_text()
    assert "designed study (controlled): 2^(7-3)" in html
    assert "controlled comparisons" in html and "associations" not in html


# -- how often a verdict flips, and what an incomplete design can still estimate ----------------


def test_flip_rate_is_zero_for_a_strong_effect_and_high_for_a_verdict_called_by_chance():
    """Planted: factor 0 an effect of 20 standard errors; factor 1 no effect, but noise that
    puts its estimate at t = 2.5, just past the 95% edge (t(0.975, 8) = 2.306), so this sample
    calls it "confirmed"; factor 3 no effect and an estimate of exactly 0 ("inconclusive")."""
    from ganarch.analysis.designed import design_verdict, rerun_flip_rates

    d = make_design("fractional", _factors(7))
    x = d.matrix.astype(float)
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 0.01, 16)
    for j in (1, 3):
        noise -= (x[:, j] @ noise) / 16 * x[:, j]  # no component along the null factors
    fit = fit_main_effects(x, noise)
    s = (fit.effects[0].ci_high - fit.effects[0].ci_low) / 2 / 2.306004  # the effects' SE
    y = 0.5 + (20 * s / 2) * x[:, 0] + (2.5 * s / 2) * x[:, 1] + noise
    names = [str(i) for i in range(7)]
    fit = fit_design(d, range(16), y, names).main
    assert [design_verdict(e) for e in fit.effects[:4:]] == [
        "confirmed",
        "confirmed",  # a false positive
        design_verdict(fit.effects[2]),
        "inconclusive",
    ]
    assert fit.effects[1].effect / s == pytest.approx(2.5, rel=1e-6)
    rates = rerun_flip_rates(d, range(16), y, names)
    assert rates[0] < 1e-6  # the strong effect never loses its verdict
    assert rates[1] >= 0.3  # the chance verdict is lost in a large share of re-runs
    assert rates[3] <= 0.15  # an estimate of 0 stays inconclusive (a re-run's false positive)
    assert rates == rerun_flip_rates(d, range(16), y, names)  # exact: the same table each time
    # Re-run the study by hand: the fitted responses plus fresh noise with the residual
    # variance, refitted with the same model; the exact rates agree within simulation error.
    reruns = 1500
    sim = _simulated_flip_rates(d, range(16), y, names, reruns=reruns, higher_is_better=True)
    for exact, got in zip(rates, sim, strict=True):
        assert got == pytest.approx(exact, abs=4 * math.sqrt(0.25 / reruns))


def _simulated_flip_rates(design, runs, y, names, *, reruns, higher_is_better, seed=0):
    """The share of simulated re-runs of a designed study whose verdict differs."""
    from ganarch.analysis.designed import design_verdict

    fit = fit_design(design, runs, y, names).main
    base = [design_verdict(e, higher_is_better=higher_is_better) for e in fit.effects]
    rng = np.random.default_rng(seed)
    flips = np.zeros(len(base))
    for _ in range(reruns):
        again = fit_design(design, runs, fit.fitted + rng.normal(0, fit.sigma, len(y)), names)
        for j, e in enumerate(again.main.effects):
            flips[j] += design_verdict(e, higher_is_better=higher_is_better) != base[j]
    return list(flips / reruns)


def test_designed_flip_rates_agree_with_simulated_reruns_on_the_32_run_fit():
    """The 32-run design fitted with its interaction chains (df 6), lower is better, effects
    near the edge: the exact rates (noncentral t) match re-runs simulated from the fit."""
    from ganarch.analysis.designed import rerun_flip_rates

    d = make_design("fractional32", _factors(7))
    x = d.matrix.astype(float)
    rng = np.random.default_rng(11)
    y = 0.5 + x @ np.array([0.012, -0.01, 0.02, 0.0, 0.006, -0.015, 0.03]) / 2
    y = y + rng.normal(0, 0.02, 32)
    names = [str(i) for i in range(7)]
    rates = rerun_flip_rates(d, range(32), y, names, higher_is_better=False)
    assert all(r is not None for r in rates) and any(0.2 < r < 0.8 for r in rates)
    sim = _simulated_flip_rates(d, range(32), y, names, reruns=1000, higher_is_better=False)
    for exact, got in zip(rates, sim, strict=True):
        assert got == pytest.approx(exact, abs=4 * math.sqrt(0.25 / 1000))


def test_the_rules_table_shows_each_claims_flip_rate_at_80_columns(capsys, monkeypatch):
    from ganarch.cli.analysis import print_table

    study, _ = _designed_study(effects=PLANTED, noise=0.01, rng=np.random.default_rng(0))
    table = rules_table(study)  # one seed per run: no seed flips, the re-run rate still
    rows = {r.claim.id: r for r in table.rows}
    for cid in (3, 7):  # effects of 0.10 and 0.12 against noise 0.01
        assert rows[cid].verdict == "confirmed" and rows[cid].flip_rate < 1e-6
        assert rows[cid].stable and rows[cid].flips is None
    assert all(0.0 <= r.flip_rate <= 1.0 for r in table.rows)
    assert rows[3].to_dict()["flip_rate"] == rows[3].flip_rate
    rate_note = [n for n in table.notes if n.startswith("flips: a model-based prediction")]
    assert (
        rate_note
        and "a re-run of the design" in rate_note[0]
        and "noncentral t" in rate_note[0]
        and "function of the claim's t" in (rate_note[0])
    )
    monkeypatch.setenv("COLUMNS", "80")
    print_table(table)
    out = capsys.readouterr().out
    assert "flips" in out and " 0% " in out
    assert max(len(line) for line in out.splitlines()) <= 80


def test_the_32_run_design_fitted_with_interactions_still_counts_seed_flips():
    study, _ = _designed_study(
        "fractional32", effects=PLANTED, noise=0.01, rng=np.random.default_rng(4), seeds=2
    )
    table = rules_table(study)
    assert any("fitted with the two-factor interaction chains" in n for n in table.notes)
    assert all(r.flips is not None and r.flips[1] == 2 for r in table.rows)
    assert all(r.flip_rate is not None for r in table.rows)


def test_an_incomplete_design_recomputes_aliasing_from_the_runs_present():
    """Only the runs where claims 3 and 4 take the same level finished: their columns coincide,
    so neither is estimable (shown 'aliased', naming the other). Through the generators
    (G=ACD, F=BCD) the same half also makes 1 = 7 and 2 = 6; claim 5 is still estimable,
    and the notes say the aliasing comes from the runs present."""
    from ganarch.analysis.designed import present_aliasing

    complete, sampler = _designed_study(effects=PLANTED, noise=0.01, rng=np.random.default_rng(2))
    m = sampler.design.matrix
    keep = [
        t for t in complete.trials if m[t.user_attrs[RUN_ATTR], 2] == m[t.user_attrs[RUN_ATTR], 3]
    ]
    study = optuna.create_study(direction="maximize")
    for key, value in complete.user_attrs.items():
        study.set_user_attr(key, value)
    for t in keep:
        study.add_trial(t)
    present = sorted(t.user_attrs[RUN_ATTR] for t in keep)
    assert len(present) == 8
    names = [str(c) for c in range(1, 8)]
    aliasing = present_aliasing(sampler.design, present, names)
    assert [a.estimable for a in aliasing] == [False, False, False, False, True, False, False]
    assert [a.text for a in aliasing if not a.estimable] == ["7", "6", "4", "3", "2", "1"]
    # Two runs missing: every main effect estimable, but two-factor interactions leak in.
    two_short = present_aliasing(sampler.design, range(14), names)
    assert all(a.estimable and a.leaks for a in two_short)
    coef = dict(two_short[0].leaks)["1×2"]
    # What the coefficient means: a pure 1×2 interaction (no main effects, no noise) shows
    # up in claim 1's estimated main effect as 2 · coefficient · its half-effect.
    x = sampler.design.matrix[:14]
    fit = fit_main_effects(x, 0.5 + 0.03 * x[:, 0] * x[:, 1])
    assert fit.effects[0].effect == pytest.approx(2 * coef * 0.03, abs=1e-12) and coef != 0
    # the planned matrix says every main effect is free of two-factor interactions:
    assert all(
        a.text == "no two-factor interaction"
        for a in present_aliasing(sampler.design, range(16), names)
    )
    table = rules_table(study)
    rows = {r.claim.id: r for r in table.rows}
    assert rows[3].confounded_with == "4" and rows[4].confounded_with == "3"
    assert rows[3].shown_verdict == rows[4].shown_verdict == "aliased"
    assert rows[3].to_dict()["confounded_with"] == "4"
    assert rows[5].effect.effect is not None and rows[5].confounded_with is None
    assert rows[5].effect.df == 3  # 8 runs − (the mean + 4 separable columns)
    notes = " | ".join(table.notes)
    assert "aliasing recomputed from the 8 runs present, not the planned matrix" in notes
    assert "claim 3 with 4; claim 4 with 3" in notes
    assert "in the planned design, two-factor interactions that share a column" in notes
    assert "8 of 16 runs finished" in notes

    # A study stopped half-way: the design hands out runs in standard order, so the first 8
    # hold claim 1 at one level. Only claim 1 is lost (to the mean); claims 2-7 are estimable,
    # and interactions with the fixed claim 1 (1×b is just ±b there) are not named as leaks.
    half = [t for t in complete.trials if t.user_attrs[RUN_ATTR] < 8]
    aliasing = present_aliasing(sampler.design, range(8), names)
    assert [a.estimable for a in aliasing] == [False] + [True] * 6
    assert aliasing[0].text == "the mean (one level only)"
    assert all("1×" not in a.text for a in aliasing)
    assert [a.text for a in aliasing[1:3]] == [
        "3×5 (+1.00), 6×7 (+1.00)",
        "2×5 (+1.00), 4×7 (+1.00)",
    ]
    stopped = optuna.create_study(direction="maximize")
    for key, value in complete.user_attrs.items():
        stopped.set_user_attr(key, value)
    for t in half:
        stopped.add_trial(t)
    rows = {r.claim.id: r for r in rules_table(stopped).rows}
    assert rows[1].shown_verdict == "aliased"
    assert rows[1].confounded_with == "the mean (one level only)"
    assert all(rows[c].confounded_with is None and rows[c].effect.effect is not None
               for c in range(2, 8))  # fmt: skip


def test_aliases_are_the_columns_a_factor_coincides_with_not_a_fixed_one():
    """2³ hand example: c held at one level and a = b in the runs present: a is aliased with
    b alone (not with c), and c with the mean alone."""
    from ganarch.analysis.designed import present_aliasing
    from ganarch.search.design import Design

    design = Design("hand", (), np.array([[1, 1, 1], [-1, -1, 1], [1, 1, 1], [-1, -1, 1]]), ())
    aliasing = present_aliasing(design, range(4), ["a", "b", "c"])
    assert [a.text for a in aliasing] == ["b", "a", "the mean (one level only)"]


def test_a_design_whose_runs_mostly_sit_at_the_floor_says_so_and_keeps_its_verdicts():
    """28 of 32 runs at ~0 on real data let two runs drive every effect: the table must say
    so (a note naming the count and the runs off the floor, 'at_floor' in --json), while the
    verdicts stay as fitted. A study off the floor gets neither the note nor a count."""
    space = load_space("claims")
    sampler = DesignSampler(design_for(space, "fractional"))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.set_user_attr("ganarch", {"data": "synthetic", "steps": 0, "seeds": 1})

    def objective(trial):
        choices = space.suggest(trial)
        paper = [c.side(choices) == "paper" for c in CLAIMS]
        # 2 of 16 runs (claims 1, 3 and 7 on the paper's side) leave the floor.
        value = 0.165 if paper[0] and paper[2] and paper[6] else 0.002
        trial.set_user_attr("choices", resolve(choices))
        trial.set_user_attr("seed_objectives", [value])
        return value

    study.optimize(objective, n_trials=sampler.design.runs)
    table = rules_table(study)
    high = sorted(t.number for t in study.trials if t.value > 0.1)
    assert len(high) == 2
    note = next(n for n in table.notes if n.startswith("floor:"))
    assert note.startswith("floor: 14 of 16 runs scored below 0.01")
    assert "every effect rests on the other 2 runs" in note
    for number in high:
        assert f"(trial {number})" in note
    assert table.to_dict()["at_floor"] == {"count": 14, "of": 16, "threshold": 0.01}
    assert {r.claim.id: r.effect.effect for r in table.rows}[7] > 0  # the fit is as it was

    normal, _ = _designed_study(effects=PLANTED, noise=0.01, rng=np.random.default_rng(0))
    table = rules_table(normal)
    assert not any(n.startswith("floor:") for n in table.notes)
    assert table.to_dict()["at_floor"] == {"count": 0, "of": 16, "threshold": 0.01}
