"""Ablation (with a stand-in trainer, and a real tiny one when the trainer exists), the HTML
report, and the ``rules`` / ``ablate`` / ``report`` commands."""

from __future__ import annotations

import json
import math
import re

import optuna
import pytest
import typer
from optuna.trial import create_trial
from test_rules_stats import synthetic_study
from typer.testing import CliRunner

from ganarch.analysis import get_claim, rules_table
from ganarch.analysis.ablation import ablate, ablation_table, load_runs, variants
from ganarch.analysis.report import REPORT_NAME, best_trials, write_report
from ganarch.cli import analysis as analysis_cli
from ganarch.errors import GanarchError
from ganarch.templates import dcgan_spec

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _engine_ready() -> bool:
    """The trainer, datasets and scorer are all importable (they land separately)."""
    try:
        import ganarch.run  # noqa: F401
        from ganarch.data import load_dataset  # noqa: F401
        from ganarch.score import Evaluator  # noqa: F401
    except ImportError:
        return False
    return True


HAS_TRAIN = _engine_ready()


class FakeTrain:
    """Objective = 0.5 + 0.05·seed, minus 0.1 ± 0.01 (by seed; 0.1 on average over seeds 0-2)
    with β1 = 0.9; everything else has no effect. The ±0.01 gives the paired differences a
    variance: identical differences give a zero-width interval, which is no verdict."""

    def __init__(self, interrupt_after: int | None = None):
        self.calls = []
        self.interrupt_after = interrupt_after

    def __call__(self, spec, *, data, steps, seed, device, out_dir):
        if self.interrupt_after is not None and len(self.calls) >= self.interrupt_after:
            raise KeyboardInterrupt
        self.calls.append((spec.meta["choices"].get("g_norm"), spec.training.beta1, seed))
        drop = 0.1 + 0.01 * ((seed * 7) % 3 - 1)
        objective = 0.5 + 0.05 * seed - drop * (spec.training.beta1 == 0.9)
        return {"objective": objective, "quality": objective, "stability": 1.0, "metrics": {}}


def _base():
    return dcgan_spec(16, channels=1, width=8, batch_size=32)


def _row(table, claim_id):
    return next(r for r in table.rows if r.claim.id == claim_id)


def test_variants_flip_one_rule_each():
    vs = variants(_base())
    assert vs[0].name == "paper" and vs[0].claim is None
    assert len(vs) == 8
    for v in vs[1:]:
        assert v.claim.side(v.choices) == "alternative"
        for other in vs[1:]:  # every other claim still stands with the paper
            if other.claim is not v.claim and v.claim.id != 3:
                assert other.claim.side(v.choices) in ("paper", None), (v.name, other.name)
    assert vs[7].spec.training.beta1 == 0.9


def test_ablate_paired_table_and_resume(tmp_path):
    claims = [get_claim(3), get_claim(7)]
    fake = FakeTrain(interrupt_after=4)
    with pytest.raises(KeyboardInterrupt):
        ablate(
            _base(),
            seeds=[0, 1, 2],
            steps=5,
            claims=claims,
            out_dir=tmp_path,
            train_fn=fake,
            progress=False,
        )
    assert len(fake.calls) == 4
    done = sum(len(v["runs"]) for v in load_runs(tmp_path).values())
    assert done == 4  # every finished run was saved before the interruption

    fake2 = FakeTrain()
    table = ablate(
        _base(),
        seeds=[0, 1, 2],
        steps=5,
        claims=claims,
        out_dir=tmp_path,
        train_fn=fake2,
        progress=False,
    )
    assert len(fake2.calls) == 9 - 4  # only what was missing
    assert table.evidence == "ablation (controlled, paired seeds)"
    assert table.evaluator is None
    r3, r7 = _row(table, 3), _row(table, 7)
    assert r7.effect.paired and r7.effect.n_paper == 3
    assert r7.effect.method == "paired t" and r7.effect.df == 2  # not a bootstrap over 3 values
    assert r7.effect.effect == pytest.approx(0.1) and r7.verdict == "confirmed"
    assert r3.effect.effect == pytest.approx(0.0) and r3.verdict == "inconclusive"

    fake3 = FakeTrain()
    again = ablate(
        _base(),
        seeds=[0, 1, 2],
        steps=5,
        claims=claims,
        out_dir=tmp_path,
        train_fn=fake3,
        progress=False,
    )
    assert fake3.calls == [] and again.to_dict() == table.to_dict()
    assert ablation_table(tmp_path, claims=claims).to_dict()["rules"] == table.to_dict()["rules"]

    with pytest.raises(GanarchError, match="other settings"):
        ablate(
            _base(),
            seeds=[0],
            steps=6,
            claims=claims,
            out_dir=tmp_path,
            train_fn=fake3,
            progress=False,
        )
    two = ablate(
        _base(),
        seeds=[0, 1],
        steps=6,
        claims=claims,
        out_dir=tmp_path,
        train_fn=FakeTrain(),
        progress=False,
        force=True,
    )
    assert _row(two, 7).verdict == "not enough trials"


def test_ablate_rejects_a_base_off_the_paper(tmp_path):
    with pytest.raises(GanarchError, match="claim 7"):
        ablate(
            dcgan_spec(16, channels=1, width=8, beta1=0.9),
            seeds=[0],
            steps=1,
            claims=[get_claim(7)],
            out_dir=tmp_path,
            train_fn=FakeTrain(),
            progress=False,
        )


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TRAIN, reason="the trainer, datasets or scorer are not there yet")
def test_ablate_real_tiny(tmp_path):
    table = ablate(
        dcgan_spec(16, channels=1, width=8, batch_size=32),
        data="digits",
        seeds=[0, 1],
        steps=10,
        claims=[get_claim(3), get_claim(7)],
        out_dir=tmp_path,
        device="cpu",
        progress=False,
        eval_every=10,  # one evaluation per run keeps this test short
    )
    runs = load_runs(tmp_path)
    assert set(runs) == {"paper", "claim-3-batchnorm-in-g-and-d", "claim-7-adam-beta1-0-5"}
    for entry in runs.values():
        assert set(entry["runs"]) == {"0", "1"}
    for entry in runs.values():
        for run in entry["runs"].values():
            assert 0.0 <= run["objective"] <= 1.0 and "fid" in run["metrics"]
            assert (tmp_path / "runs" / entry["variant"] / f"seed-{run['seed']}").is_dir()
    for row in table.rows:  # two seeds: an effect and a CI, but no verdict
        assert row.effect.n_paper == 2 and row.effect.ci_low is not None
        assert row.verdict == "not enough trials"


# -- report -------------------------------------------------------------------------------------


def _png(path, colour=(200, 30, 30)):
    from PIL import Image

    Image.new("RGB", (12, 12), colour).save(path)


def test_report_is_self_contained(tmp_path):
    src = synthetic_study(n=40)
    best = best_trials(src, 1)[0].number
    art = tmp_path / "trial-art"  # a multi-seed run: the images live per seed
    (art / "seed-0").mkdir(parents=True)
    _png(art / "seed-0" / "samples.png")
    _png(art / "curves.png", (30, 30, 200))
    study = optuna.create_study(direction="maximize")
    for t in src.get_trials():
        attrs = {**t.user_attrs, **({"artifacts": str(art)} if t.number == best else {})}
        study.add_trial(
            create_trial(
                params=t.params, distributions=t.distributions, value=t.value, user_attrs=attrs
            )
        )

    path = write_report(study, tmp_path / "rep")
    assert path.name == REPORT_NAME
    text = path.read_text()
    assert "<table>" in text and "LeakyReLU in D" in text and "confirmed" in text
    # Each rated row shows its flip rate beside its verdict, as the terminal table does.
    rated = [r for r in rules_table(study).rows if r.flip_rate is not None]
    assert rated and "<th>flips</th><th>verdict</th>" in text
    for r in rated:
        assert f'<td class="num">{r.flip_rate:.0%}</td><td class="verdict"' in text
    assert "PedAnovaImportanceEvaluator" in text
    assert text.count('<img alt="samples.png" src="data:image/png;base64,') == 1
    assert 'alt="curves.png"' in text
    assert text.count("data:image/png;base64,") >= 4  # effect, importance, samples, curves
    assert not re.search(r"https?://", text)
    assert not re.search(r"""(src|href)=["'](?!data:)""", text)  # nothing fetched

    with pytest.raises(GanarchError, match="already exists"):
        write_report(study, tmp_path / "rep")
    write_report(study, tmp_path / "rep", force=True)


def test_report_multi_objective_and_empty(tmp_path):
    study = optuna.create_study(directions=["maximize", "maximize"])
    path = write_report(study, tmp_path / "empty")
    assert "No complete trials" in path.read_text()


# -- CLI ------------------------------------------------------------------------------------------


@pytest.fixture()
def cli():
    app = typer.Typer()
    analysis_cli.register(app)
    return app


def _journal_study(tmp_path):
    from ganarch.search.storage import open_storage

    storage = str(tmp_path / "s.journal")
    src = synthetic_study(n=60)
    dst = optuna.create_study(
        study_name="synth", storage=open_storage(storage), direction="maximize"
    )
    dst.add_trials(src.get_trials())
    return storage


def test_cli_rules_and_report(tmp_path, cli):
    storage = _journal_study(tmp_path)
    runner = CliRunner()
    res = runner.invoke(cli, ["rules", "synth", "--storage", storage, "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["evidence"].startswith("search (sampler-biased)")
    assert "PED-ANOVA" in data["importance_evaluator"]
    verdicts = {r["claim"]: r["verdict"] for r in data["rules"]}
    assert verdicts[6] == "confirmed" and verdicts[7] == "contradicted"
    assert "verdict_rule" in data
    rates = {r["claim"]: r["flip_rate"] for r in data["rules"]}
    assert all(0.0 <= rates[c] <= 1.0 for c in (3, 6, 7)) and rates[1] is None
    assert any("chosen by its sampler" in n for n in data["notes"])

    res = runner.invoke(cli, ["rules", "synth", "--storage", storage, "--evaluator", "fanova"])
    assert res.exit_code == 0, res.output
    assert "LeakyReLU" in res.stdout and "FanovaImportanceEvaluator" in res.stdout

    res = runner.invoke(cli, ["report", "synth", "--storage", storage, "-o", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / REPORT_NAME).is_file()

    abl = tmp_path / "abl"
    ablate(
        _base(),
        seeds=[0, 1, 2],
        steps=2,
        claims=[get_claim(7)],
        out_dir=abl,
        train_fn=FakeTrain(),
        progress=False,
    )
    args = [
        "report",
        "synth",
        "--storage",
        storage,
        "-o",
        str(tmp_path / "r"),
        "--ablation",
        str(abl),
    ]
    res = runner.invoke(cli, args)
    assert res.exit_code != 0  # the report exists: refused without --force
    res = runner.invoke(cli, [*args, "--force"])
    assert res.exit_code == 0, res.output
    text = (tmp_path / "r" / REPORT_NAME).read_text()
    assert "ablation (controlled, paired seeds)" in text and not re.search(r"https?://", text)


def test_a_search_table_at_80_columns_shows_flips_under_the_verdict(capsys, monkeypatch):
    """The importance and flips columns together do not fit 80 columns: the rates go under
    each verdict, and the table stays a table (not one record per claim)."""
    from ganarch.analysis import rules_table

    table = rules_table(synthetic_study(n=60))
    monkeypatch.setenv("COLUMNS", "80")
    analysis_cli.print_table(table)
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert any("┃ verdict" in line for line in lines) and "┃ flips" not in text
    rate = _row(table, 6).flip_rate
    assert re.search(rf"│ flips {rate:.0%}\s*│", text), text
    monkeypatch.setenv("COLUMNS", "100")  # room for its own column
    analysis_cli.print_table(table)
    assert "┃ flips" in capsys.readouterr().out


def test_cli_bad_input(tmp_path, cli):
    from ganarch.cli import _Group

    storage = _journal_study(tmp_path)
    app = typer.Typer(cls=_Group)  # the real app's error handling: exit code 2, one line
    analysis_cli.register(app)
    runner = CliRunner()
    res = runner.invoke(app, ["rules", "nope", "--storage", storage])
    assert res.exit_code == 2 and "no study named 'nope'" in res.output
    res = runner.invoke(app, ["rules", "synth", "--storage", storage, "--evaluator", "x"])
    assert res.exit_code == 2 and "--evaluator" in res.output
    res = runner.invoke(app, ["ablate", "--claims", "9", "--out", str(tmp_path / "a")])
    assert res.exit_code == 2 and "--claims" in res.output


def test_cli_ablate(tmp_path, cli, monkeypatch):
    import ganarch.analysis.ablation as ablate_module

    monkeypatch.setattr(ablate_module, "_default_train", lambda: FakeTrain())
    args = [
        "ablate",
        "--image-size",
        "16",
        "--width",
        "8",
        "--steps",
        "3",
        "--seeds",
        "3",
        "--claims",
        "3,7",
        "--out",
        str(tmp_path / "abl"),
    ]
    res = CliRunner().invoke(cli, [*args, "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["evidence"] == "ablation (controlled, paired seeds)"
    assert [r["claim"] for r in data["rules"]] == [3, 7]
    assert data["rules"][1]["verdict"] == "confirmed"
    # +0.10 [0.075, 0.125] over 3 seeds: a re-run keeps it (t = 17); claim 3: no width, no rate
    assert data["rules"][1]["flip_rate"] < 0.05 and data["rules"][1]["stable"] is True
    assert data["rules"][0]["flip_rate"] is None
    # the same ablation as a table: resumed, nothing trained again
    res = CliRunner().invoke(cli, args, env={"COLUMNS": "120"})
    assert res.exit_code == 0, res.output
    row7 = next(line for line in res.stdout.splitlines() if "Adam beta1" in line)
    assert "flips" in res.stdout and re.search(r"\b\d+% .*confirmed", row7), res.stdout


def test_cli_reads_the_storage_from_the_environment_and_never_creates_one(tmp_path, monkeypatch):
    from ganarch.cli import _Group

    storage = _journal_study(tmp_path)
    app = typer.Typer(cls=_Group)
    analysis_cli.register(app)
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GANARCH_STORAGE", storage)
    res = runner.invoke(app, ["rules", "synth", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["rules"]

    monkeypatch.setenv("GANARCH_STORAGE", str(tmp_path / "missing.journal"))
    for args in (["rules", "synth"], ["report", "synth", "-o", str(tmp_path / "r")]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and "no study storage" in res.output, res.output
    assert not (tmp_path / "missing.journal").exists() and not (tmp_path / "r").exists()


def test_evaluator_names_match_the_analysis():
    from ganarch.analysis.rules import EVALUATORS

    assert tuple(EVALUATORS) == analysis_cli.EVALUATOR_NAMES


def test_ablation_flips_under_leave_one_seed_out():
    from ganarch.analysis.ablation import reseed_flips

    steady = reseed_flips([0.80, 0.82, 0.79, 0.81], [0.70, 0.71, 0.70, 0.69])
    assert steady == (0, 4)
    # three seeds agree, one disagrees: leaving that one out changes the verdict
    shaky = reseed_flips([0.80, 0.82, 0.79, 0.50], [0.70, 0.71, 0.70, 0.60])
    assert shaky is not None and shaky[1] == 4 and shaky[0] >= 1
    assert reseed_flips([0.8, 0.8, 0.8], [0.7, 0.7, 0.7]) is None  # a refit of 2 has no verdict
    assert reseed_flips([0.8, 0.8, 0.8, math.nan], [0.7, 0.7, 0.7, 0.7]) is None


def test_ablate_table_reports_flips_with_four_seeds(tmp_path):
    table = ablate(
        _base(),
        seeds=[0, 1, 2, 3],
        steps=5,
        claims=[get_claim(7)],
        out_dir=tmp_path,
        train_fn=FakeTrain(),
        progress=False,
    )
    row = _row(table, 7)
    assert row.verdict == "confirmed" and row.flips == (0, 4)
    assert row.flip_rate is not None and row.flip_rate < 0.01 and row.stable
    assert row.shown_flips == "0% 0/4"  # the flips cell: the rate, then the seed flips
    assert any(n.startswith("seed flips (after the rate") for n in table.notes)


class WobblyTrain(FakeTrain):
    """β1 = 0.9 costs 0.065, 0.135 and 0.100 on seeds 0, 1, 2: +0.1 [0.013, 0.187] over three
    paired seeds, just past the interval's edge (t = 4.95, t(0.975, 2) = 4.30)."""

    def __call__(self, spec, *, data, steps, seed, device, out_dir):
        drop = {0: 0.065, 1: 0.135, 2: 0.100}[seed] * (spec.training.beta1 == 0.9)
        objective = 0.5 + 0.05 * seed - drop
        return {"objective": objective, "quality": objective, "stability": 1.0, "metrics": {}}


def test_ablate_rows_carry_a_flip_rate_and_a_verdict_near_its_edge_is_unstable(tmp_path):
    from ganarch.analysis.stats import flip_rate

    table = ablate(
        _base(),
        seeds=[0, 1, 2],
        steps=2,
        claims=[get_claim(7), get_claim(3)],
        out_dir=tmp_path,
        train_fn=WobblyTrain(),
        progress=False,
    )
    shaky, flat = _row(table, 7), _row(table, 3)
    assert shaky.verdict == "confirmed" and shaky.flips is None  # 3 seeds: no seed flips
    assert shaky.flip_rate == pytest.approx(flip_rate(shaky.effect))
    assert 0.2 <= shaky.flip_rate < 0.5  # a re-run of 3 seeds loses it about 1 time in 3
    assert shaky.stable is False and shaky.shown_verdict == "confirmed (unstable)"
    d = shaky.to_dict()
    assert (d["verdict"], d["flip_rate"], d["shown_verdict"]) == (
        "confirmed",
        shaky.flip_rate,
        "confirmed (unstable)",
    )
    # claim 3 changes nothing here: identical pairs, an interval without width, no rate
    assert flat.verdict == "inconclusive" and flat.flip_rate is None
    assert any(n.startswith("flips: a model-based prediction") for n in table.notes)
    assert any(n.startswith("seed flips: not measured") for n in table.notes)
    # The report's ablation table shows why the row is marked: its rate beside the verdict.
    text = write_report(synthetic_study(n=40), tmp_path / "rep", ablation=tmp_path).read_text()
    ablation = text[text.index("<h2>Ablation") :]
    shown = f'<td class="num">{shaky.flip_rate:.0%}</td><td class="verdict" '
    assert re.search(re.escape(shown) + r'style="[^"]*">confirmed \(unstable\)</td>', ablation)
    assert '<td class="num">-</td><td class="verdict" ' in ablation  # claim 3: no rate


class FloorTrain(FakeTrain):
    """Every run's generator still makes noise (objective 0) except β1 = 0.9's, at 0.35: the
    paper's DCGAN and most variants at the floor, as on shapes at 1,000 steps."""

    def __call__(self, spec, *, data, steps, seed, device, out_dir):
        objective = 0.35 + 0.01 * seed if spec.training.beta1 == 0.9 else 0.0
        return {"objective": objective, "quality": objective, "stability": 1.0, "metrics": {}}


def test_an_ablation_mostly_at_the_floor_says_so_and_one_off_it_does_not(tmp_path):
    claims = [get_claim(3), get_claim(7)]
    table = ablate(
        _base(),
        seeds=[0, 1, 2],
        steps=2,
        claims=claims,
        out_dir=tmp_path / "floor",
        train_fn=FloorTrain(),
        progress=False,
    )
    note = next(n for n in table.notes if n.startswith("floor:"))
    assert note.startswith("floor: 6 of 9 runs scored below 0.01")
    assert "every effect rests on the other 3 runs" in note and "seed 2" in note
    assert table.to_dict()["at_floor"] == {"count": 6, "of": 9, "threshold": 0.01}
    assert _row(table, 7).verdict == "contradicted"  # the verdict itself is kept
    # The same runs read back from the directory (``ganarch ablate`` / ``rules`` on it).
    assert ablation_table(tmp_path / "floor", claims=claims).at_floor == table.at_floor

    normal = ablate(
        _base(),
        seeds=[0, 1, 2],
        steps=2,
        claims=claims,
        out_dir=tmp_path / "normal",
        train_fn=FakeTrain(),
        progress=False,
    )
    assert not any(n.startswith("floor:") for n in normal.notes)
    assert normal.to_dict()["at_floor"] == {"count": 0, "of": 9, "threshold": 0.01}


def test_a_search_mostly_at_the_floor_says_so_and_a_score_without_a_floor_is_not_counted():
    source = synthetic_study(n=40)
    study = optuna.create_study(direction="maximize")
    for t in source.trials:  # all but trials 5 and 11 at the floor
        value = 0.2 if t.number in (5, 11) else 0.003
        study.add_trial(
            create_trial(
                params=t.params,
                distributions=t.distributions,
                value=value,
                user_attrs=t.user_attrs,
            )
        )
    table = rules_table(study)
    note = next(n for n in table.notes if n.startswith("floor:"))
    assert note.startswith("floor: 38 of 40 trials scored below 0.01")
    assert "the other 2 trials (trial 5, trial 11)" in note
    assert table.to_dict()["at_floor"] == {"count": 38, "of": 40, "threshold": 0.01}

    normal = rules_table(synthetic_study(n=40))  # scores near 1: off the floor
    assert not any(n.startswith("floor:") for n in normal.notes)
    assert normal.to_dict()["at_floor"] == {"count": 0, "of": 40, "threshold": 0.01}
    lower = rules_table(synthetic_study(n=40, maximize=False))  # lower is better: no floor of 0
    assert lower.at_floor is None and not any(n.startswith("floor:") for n in lower.notes)
