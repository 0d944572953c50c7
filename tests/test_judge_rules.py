"""experiments/judge_rules.py: ganarch's rules verdicts beside an independent judge's.

The judge (``score_judge``) scores each run's samples; the script fits the judge's metrics
with ganarch's own designed-study analysis and says where the two agree.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import score_judge

ROOT = Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location(
        "judge_rules", ROOT / "experiments" / "judge_rules.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


judge_rules = _script()
LOWER = {"fd", "nn1"}


def _claims_design():
    from ganarch.search.design import design_for
    from ganarch.search.space import load_space

    design = design_for(load_space("claims"), "fractional")
    names = [str(f.claim) if f.claim is not None else f.name for f in design.factors]
    return design, names


@pytest.fixture(scope="module")
def digits():
    return judge_rules.reference("digits", 16, 1)


def test_a_claim_whose_paper_side_is_real_digits_and_other_side_noise_is_confirmed(digits):
    """Known answer: in every run of the 16-run design, the paper's side of claim 3 draws
    real digits and the other side uniform noise; every judge metric must find claim 3
    confirmed with the paper's side better (fd and nn1 lower, classifier higher), and give
    the other claims (orthogonal columns) a far smaller effect."""
    images, labels = digits
    judge = score_judge.Judge(images, labels)
    design, names = _claims_design()
    j3 = next(j for j, f in enumerate(design.factors) if f.claim == 3)
    rng = np.random.default_rng(1)
    per_run = {}
    for run in range(design.runs):
        seeds = []
        for _ in range(2):
            if design.matrix[run, j3] > 0:  # the paper's side
                x = images[rng.choice(len(images), 300, replace=False)]
            else:
                x = rng.uniform(-1, 1, (300, *images.shape[1:]))
            seeds.append(judge.score(x))
        per_run[run] = seeds
    fits = judge_rules.judge_design_effects(design, per_run, names)
    assert set(fits) == {"fd", "nn1", "classifier"}
    for m, per_factor in fits.items():
        e3 = per_factor[j3]
        assert e3["higher_is_better"] == (m not in LOWER)
        assert (e3["effect"] < 0) == (m in LOWER), (m, e3)
        assert e3["verdict"] == "confirmed", (m, e3)
        others = [abs(e["effect"]) for j, e in enumerate(per_factor) if j != j3]
        assert max(others) < abs(e3["effect"]) / 5, (m, others, e3["effect"])
    # ganarch calling claim 3 confirmed agrees with every metric; contradicted with none.
    row = {"ganarch": {"effect": 0.2, "scale": 1.0, "higher_is_better": True}}
    row["ganarch"]["verdict"] = "confirmed"
    row["judge"] = {m: fits[m][j3] for m in fits}
    judge_rules.compare(row, list(fits))
    assert row["signs_agree"] == row["verdicts_agree"] == dict.fromkeys(fits, True)
    row["ganarch"].update(effect=-0.2, verdict="contradicted")
    judge_rules.compare(row, list(fits))
    assert row["signs_agree"] == row["verdicts_agree"] == dict.fromkeys(fits, False)


def _effect(effect, verdict="inconclusive", higher=True):
    return {"effect": effect, "scale": 1.0, "verdict": verdict, "higher_is_better": higher}


def test_signs_agree_on_the_side_each_says_is_better_whatever_its_direction():
    g = _effect(0.05, "confirmed")
    row = {
        "ganarch": g,
        "judge": {
            "fd": _effect(-3.0, "confirmed", higher=False),  # lower fd on the paper's side
            "nn1": _effect(+0.02, "inconclusive", higher=False),  # higher nn1: other side
            "classifier": _effect(1e-17, "inconclusive"),  # rounding noise favours neither
        },
    }
    judge_rules.compare(row, ["fd", "nn1", "classifier"])
    # an effect of (nearly) 0 has no side: neither agreement nor disagreement of signs; its
    # inconclusive verdict still disagrees with ganarch's confirmed one
    assert row["signs_agree"] == {"fd": True, "nn1": False, "classifier": None}
    assert row["verdicts_agree"] == {"fd": True, "nn1": False, "classifier": False}
    empty = {"ganarch": _effect(None, "not enough trials"), "judge": row["judge"]}
    judge_rules.compare(empty, ["fd"])
    assert empty["signs_agree"] == empty["verdicts_agree"] == empty["decided"] == {"fd": None}
    counts = judge_rules.summary([row, empty], ["fd", "nn1"], {"fd": True, "nn1": True})
    assert counts["fd"] == {
        "signal": True,
        "signs_agree": 1,
        "signs_of": 1,
        "verdicts_agree": 1,
        "decided": 1,
        "both_inconclusive": 0,
    }
    assert counts["nn1"]["signs_agree"] == 0 and counts["nn1"]["signs_of"] == 1


def _row(g, **judge):
    row = {"claim": 0, "name": "", "ganarch": {**g, "score": "objective"}, "judge": judge}
    judge_rules.compare(row, list(judge))
    return row


def test_verdicts_agree_only_where_either_side_decides_and_both_inconclusive_is_counted_apart():
    # same side, different verdicts: the signs agree, the verdicts do not
    split = _row(_effect(0.2, "confirmed"), fd=_effect(-3.0, "inconclusive", higher=False))
    assert split["signs_agree"]["fd"] is True
    assert split["decided"]["fd"] is True and split["verdicts_agree"]["fd"] is False
    # both sides inconclusive (same side): not an agreement of verdicts, counted apart
    both = _row(_effect(0.01), fd=_effect(-0.5, "inconclusive", higher=False))
    assert both["signs_agree"]["fd"] is True
    assert both["decided"]["fd"] is False and both["verdicts_agree"]["fd"] is None
    # both effects exactly 0: no side on either, so no agreement of signs
    zero = _row(_effect(0.0), fd=_effect(0.0, higher=False))
    assert zero["signs_agree"]["fd"] is None and zero["verdicts_agree"]["fd"] is None
    agree = _row(_effect(-0.3, "contradicted"), fd=_effect(4.0, "contradicted", higher=False))
    assert agree["signs_agree"]["fd"] is agree["verdicts_agree"]["fd"] is True
    counts = judge_rules.summary([split, both, zero, agree], ["fd"], {"fd": True})["fd"]
    assert counts == {
        "signal": True,
        "signs_agree": 3,
        "signs_of": 3,
        "verdicts_agree": 1,
        "decided": 2,
        "both_inconclusive": 2,
    }
    text = judge_rules.markdown(
        judge_rules._result(source="s", rows=[split, both, zero, agree], metrics=["fd"], notes=[])
    )
    assert "fd: signs agree on 3 of 3; verdicts agree on 1 of 2 decided" in text
    assert "(2 inconclusive on both sides)" in text


def test_a_metric_whose_effects_are_all_negligible_has_no_signal_not_agreement():
    """nn1 at its ceiling for every generator: effects of ~1e-16 on every claim, every
    verdict inconclusive. That is no evidence: "—", not "agree on 7 of 7"."""
    g_verdicts = ["confirmed", "inconclusive", "confirmed", "inconclusive"]
    rows = [
        _row(
            _effect(0.1 if v == "confirmed" else 0.01, v),
            nn1=_effect(1e-16 * (-1) ** k, higher=False),
            fd=_effect(-2.0, "confirmed", higher=False),
        )
        for k, v in enumerate(g_verdicts)
    ]
    result = judge_rules._result(source="s", rows=rows, metrics=["nn1", "fd"], notes=[])
    nn1 = result["summary"]["nn1"]
    assert nn1["signal"] is False
    assert nn1["signs_of"] == nn1["decided"] == nn1["both_inconclusive"] == 0
    assert all(r["signs_agree"]["nn1"] is r["verdicts_agree"]["nn1"] is None for r in rows)
    fd = result["summary"]["fd"]
    assert fd["signal"] is True and (fd["verdicts_agree"], fd["decided"]) == (2, 4)
    text = judge_rules.markdown(result)
    assert "nn1: — (no signal" in text and "nn1: signs agree" not in text


def test_the_markdown_is_rendered_from_a_saved_json_output(tmp_path, capsys):
    row = _row(_effect(0.2, "confirmed"), fd=_effect(-3.0, "confirmed", higher=False))
    result = judge_rules._result(source="s", rows=[row], metrics=["fd"], notes=["n"])
    saved = tmp_path / "x.judge.json"
    saved.write_text(json.dumps(result))
    assert judge_rules.main(["--from-json", str(saved)]) == 0
    assert capsys.readouterr().out == judge_rules.markdown(result)
    saved.write_text("{}")
    assert judge_rules.main(["--from-json", str(saved)]) == 2
    assert capsys.readouterr().err.startswith("error: --from-json:")


def test_the_judge_without_labels_scores_fd_and_nn1_only(digits):
    images, _ = digits
    judge = score_judge.Judge(images[::2], None)
    real = judge.score(images[1::2][:500])
    noise = judge.score(np.random.default_rng(0).uniform(-1, 1, (500, *images.shape[1:])))
    assert set(real) == set(noise) == {"fd", "nn1"}
    assert real["fd"] < noise["fd"] / 20 and real["nn1"] < 0.7 < 0.95 < noise["nn1"]


def test_bad_ablation_folders_are_refused_in_one_line(tmp_path, capsys):
    from ganarch import dcgan_spec

    settings = tmp_path / "ablation.json"
    base = dcgan_spec(16, channels=1, width=8).to_dict()
    for text, what in [
        ("[]", "not a ganarch ablate settings file"),
        (json.dumps({"data": "digits"}), "base_spec"),
        (json.dumps({"data": "digits", "base_spec": base}), "no usable generator for the base"),
    ]:
        settings.write_text(text)
        assert judge_rules.main(["--ablate", str(tmp_path), "--quiet"]) == 2, text
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: --ablate:") and what in err and "\n" not in err, err


def test_generators_are_loaded_in_eval_mode_and_sampled_with_running_statistics(tmp_path):
    """The scorer samples with G.eval(): BatchNorm uses its running statistics, not the
    batch's. A generator left in train mode would give other (batch-dependent) samples."""
    import torch

    from ganarch import dcgan_spec

    spec = dcgan_spec(16, channels=1, width=8)
    G, _ = spec.build()
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in G.modules())
    with torch.no_grad():  # running statistics away from their (0, 1) start
        for m in G.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    spec.save(tmp_path / "spec.json")
    torch.save(G.state_dict(), tmp_path / "generator.pt")
    _, loaded = judge_rules.load_generator(tmp_path)
    assert not any(m.training for m in loaded.modules())
    x = judge_rules.draw(loaded, spec.latent_dim, 20, seed=3)
    assert np.array_equal(x, judge_rules.draw(loaded, spec.latent_dim, 20, seed=3))
    z = torch.randn(20, spec.latent_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert np.allclose(x, G.eval()(z).clamp(-1, 1).numpy(), atol=1e-6)
        assert not np.allclose(x, G.train()(z).clamp(-1, 1).numpy(), atol=1e-3)


def test_a_trial_s_generators_are_read_from_the_folder_the_search_recorded(tmp_path):
    from types import SimpleNamespace

    moved = tmp_path / "moved"
    recorded = SimpleNamespace(number=5, user_attrs={"artifacts": "/gone/runs/trial-7"})
    assert judge_rules.trial_folder(moved, recorded) == moved / "trial-7"
    old = SimpleNamespace(number=5, user_attrs={})
    assert judge_rules.trial_folder(moved, old) == moved / "trial-5"


def _recount(result, metric):
    """Agreement from the JSON's effects and verdicts alone: signs where both favour a side
    (neither effect within 1e-9 of the scale); verdicts where either side decides."""
    signs, verdicts = [], []
    for r in result["rows"]:
        g, j = r["ganarch"], r["judge"][metric]
        gs = math.copysign(1, g["effect"]) if abs(g["effect"]) > 1e-9 * g["scale"] else 0
        js = math.copysign(1, j["effect"]) if abs(j["effect"]) > 1e-9 * j["scale"] else 0
        js = -js if metric in LOWER else js
        if gs and js:
            signs.append(gs == js)
        if {g["verdict"], j["verdict"]} != {"inconclusive"}:
            verdicts.append(g["verdict"] == j["verdict"])
    return sum(signs), len(signs), sum(verdicts), len(verdicts)


@pytest.mark.slow
def test_a_real_designed_study_gets_a_judge_row_per_claim_with_ganarch_s_own_effects(
    tmp_path, capsys
):
    import ganarch
    from ganarch.analysis import rules_table

    storage = str(tmp_path / "s.journal")
    study = ganarch.search(
        "claims",
        data="digits",
        image_size=16,
        width=8,
        trials=16,
        steps=40,
        eval_every=20,
        seeds=2,
        sampler="fractional",
        storage=storage,
        study="tiny",
        out=tmp_path / "runs",
        device="cpu",
        quiet=True,
    )
    cache = tmp_path / "cache.json"
    args = ["--storage", storage, "--study", "tiny", "--cache", str(cache), "--quiet"]
    assert judge_rules.main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    rows = result["rows"]
    assert [r["claim"] for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert result["metrics"] == ["fd", "nn1", "classifier"]  # digits have labels
    table = {r.claim.id: r for r in rules_table(study).rows}
    for r in rows:
        assert r["ganarch"]["effect"] == table[r["claim"]].effect.effect
        assert r["ganarch"]["verdict"] == table[r["claim"]].verdict
        for m in result["metrics"]:
            assert math.isfinite(r["judge"][m]["effect"]), (r["claim"], m)
    # Each judge effect is mean(paper runs) − mean(alternative runs) of the runs' seed means
    # (exact in the complete orthogonal design), recomputed here from the per-seed scores.
    design, _ = _claims_design()
    runs = {x["run"]: x for x in result["runs"]}
    assert len(runs) == 16 and all(len(x["judge_seeds"]) == 2 for x in runs.values())
    for r in rows:
        j = next(j for j, f in enumerate(design.factors) if f.claim == r["claim"])
        for m in result["metrics"]:
            y = {k: np.mean([s[m] for s in x["judge_seeds"]]) for k, x in runs.items()}
            hi = np.mean([y[k] for k in runs if design.matrix[k, j] > 0])
            lo = np.mean([y[k] for k in runs if design.matrix[k, j] < 0])
            assert r["judge"][m]["effect"] == pytest.approx(hi - lo, abs=1e-9)
    for m in result["metrics"]:
        got = result["summary"][m]
        if got["signal"]:
            assert (got["signs_agree"], got["signs_of"]) == _recount(result, m)[:2], m
            assert (got["verdicts_agree"], got["decided"]) == _recount(result, m)[2:], m
            assert got["decided"] + got["both_inconclusive"] == 7, m
        else:  # every judge effect negligible: nothing counted
            assert got["signs_of"] == got["decided"] == got["both_inconclusive"] == 0, m
    # The Markdown table reads the same cache: every claim, the agreement line.
    saved = json.loads(cache.read_text())["scores"]
    assert len(saved) == 32
    assert judge_rules.main(args) == 0
    text = capsys.readouterr().out
    assert sum(line.startswith("| ") for line in text.splitlines()) == 2 + 7  # head, rule
    assert "fd: signs agree on" in text and "verdicts agree on" in text
    assert json.loads(cache.read_text())["scores"] == saved  # nothing judged again
    # A damaged generator file: that run is left out of the judge's fit, and the note says why.
    (tmp_path / "runs" / "trial-3" / "seed-1" / "generator.pt").write_bytes(b"not a checkpoint")
    assert judge_rules.main([*args, "--json"]) == 0
    damaged = json.loads(capsys.readouterr().out)
    assert any("run 3 (trial 3)" in n for n in damaged["notes"])
    assert any("trial-3/seed-1" in n and "would not load" in n for n in damaged["notes"])
    assert "(15 of 16 runs)" in damaged["notes"][0]
    # Each run is read from its counted trial's folder, as ganarch's design_runs counts it.
    from ganarch.analysis import designed
    from ganarch.analysis.rules import study_score
    from ganarch.search import results

    score, index, _ = study_score(study)
    counted = designed.design_runs(results.trials(study), index, per_seed=score == "objective")
    assert {x["run"]: x["trial"] for x in result["runs"]} == {r.run: r.trial for r in counted}
    # Bad input: one line, exit 2.
    assert judge_rules.main(["--storage", storage, "--study", "nope", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "nope" in err and "\n" not in err
    (tmp_path / "empty").mkdir()  # a wrong --out: no run has a generator there
    assert judge_rules.main([*args, "--out", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --out:") and "no trained generator" in err and "\n" not in err


@pytest.mark.slow
def test_an_ablation_gets_the_judge_s_paired_t_over_its_seeds(tmp_path, capsys):
    from ganarch import dcgan_spec
    from ganarch.analysis import ablate, get_claim

    out = tmp_path / "abl"
    table = ablate(
        dcgan_spec(16, channels=1, width=8),
        data="digits",
        seeds=[0, 1, 2],
        steps=10,
        eval_every=10,
        claims=[get_claim(3), get_claim(7)],
        out_dir=out,
        device="cpu",
        progress=False,
    )
    assert judge_rules.main(["--ablate", str(out), "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    rows = {r["claim"]: r for r in result["rows"]}
    ours = {r.claim.id: r for r in table.rows}
    assert set(rows) == {3, 7}
    runs = {x["variant"]: x for x in result["runs"]}
    paper = runs["paper"]["judge_seeds"]
    assert runs["paper"]["seeds"] == ["0", "1", "2"] and len(paper) == 3
    for cid, r in rows.items():
        assert r["ganarch"]["effect"] == pytest.approx(ours[cid].effect.effect)
        assert r["ganarch"]["verdict"] == ours[cid].verdict
        alt = next(x for x in result["runs"][1:] if x["variant"].startswith(f"claim-{cid}-"))
        for m in result["metrics"]:
            # the mean paired difference paper − alternative over the three seeds, and a
            # t-interval on 2 df around it
            diffs = [p[m] - a[m] for p, a in zip(paper, alt["judge_seeds"], strict=True)]
            j = r["judge"][m]
            assert j["effect"] == pytest.approx(np.mean(diffs), abs=1e-12)
            half = 4.302652729911275 * np.std(diffs, ddof=1) / math.sqrt(3)
            assert j["ci_high"] - j["effect"] == pytest.approx(half, rel=1e-6)
            assert j["df"] == 2
