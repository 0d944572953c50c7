"""Do ganarch's rules verdicts agree with an independent judge of the same generators?

For every run of a designed study (``ganarch search --sampler fractional|fractional32|
factorial``), and of a ``ganarch ablate`` folder, this loads each seed's trained generator from
its saved ``spec.json`` and ``generator.pt``, draws N samples (default 1,000) from fixed noise
on the CPU and scores them with the independent judge in ``tests/score_judge.py`` (NumPy,
SciPy and scikit-learn on raw pixels; it imports nothing from ganarch) against real images of
the study's dataset at the study's image size and channels: ``fd`` (Fréchet distance of 20
principal components, lower is better), ``nn1`` (1-nearest-neighbour two-sample accuracy,
lower is better) and ``classifier`` (an SVC's confidence × class variety, higher is better;
left out, and said so, for a dataset without labels).

Each judge metric then goes through the analysis ganarch uses for that evidence, with the
judge's value in place of ganarch's score: for a designed study the least-squares main-effect
fit of ``ganarch.analysis.designed.fit_design`` on each run's mean over its seeds (with the
interaction chains where the design leaves room for them, as ``ganarch rules`` fits them), for
an ablation the paired t-interval over seeds; the verdict rule is ganarch's, with the judge
metric's own direction. Beside it, ganarch's own effect and verdict for the claim (its rules
table, computed by the same functions ``ganarch rules`` and ``ganarch ablate`` call).

"Signs agree": both say the same side of the claim is better (the effect times the metric's
direction has the same sign), counted only over the claims where both effects are
non-negligible (larger than 1e-9 × the scores' size, ganarch's no-variance tolerance): an
effect of 0 favours no side, so it neither agrees nor disagrees. "Verdicts agree": the same
verdict (confirmed, contradicted, inconclusive), counted only over the claims that either side
decides (confirmed or contradicted); claims inconclusive on both sides are counted apart, as
they say nothing either way. ganarch's verdict is compared as computed, before any
"(unstable)" mark. A judge metric none of whose effects is non-negligible (constant across
runs, e.g. nn1 at its ceiling for every generator) has no signal: shown as "—", counted nowhere.

    python experiments/judge_rules.py --storage studies.journal --study claims-digits-32-2000
    python experiments/judge_rules.py --ablate results/ablate-digits --json > abl.judge.json
    python experiments/judge_rules.py --from-json abl.judge.json   # its Markdown, judged once

The judge's per-seed scores are cached (``--cache``, default ``judge-scores.json`` in the
runs folder), keyed by the generator file, its size and time, N and the noise seed: a second
run reads them back and only new or retrained generators are judged. Needs the test extra
(scikit-learn, SciPy): ``pip install -e .[test]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# The independent judge lives beside the tests that use it; it imports nothing of ganarch.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

#: Bump when the judge, the reference set or the sampling changes: older cache entries are
#: then not read.
JUDGE_VERSION = "judge-1"
METRICS = ("fd", "nn1", "classifier")
N_SAMPLES = 1000
N_REFERENCE = 2000
CACHE_NAME = "judge-scores.json"
BATCH = 250


class Refused(Exception):
    """Bad input: printed as one line, exit 2."""


# -- samples ---------------------------------------------------------------------------------


def seed_dirs(run_dir: Path) -> list[Path]:
    """A trial's per-seed run folders (``seed-S``, in seed order) when it trained several
    seeds, else the trial folder itself (one seed)."""
    subs = [p for p in run_dir.glob("seed-*") if p.is_dir() and p.name[5:].isdigit()]
    return sorted(subs, key=lambda p: int(p.name[5:])) if subs else [run_dir]


def load_generator(run_dir: Path) -> tuple[Any, Any]:
    """``(spec, generator)`` from a run folder's ``spec.json`` and ``generator.pt``, on the
    CPU in eval mode (norm layers use their running statistics, as ganarch's scorer does)."""
    import torch

    from ganarch import load_spec

    spec = load_spec(run_dir / "spec.json")
    G, _ = spec.build(init=False)
    G.load_state_dict(torch.load(run_dir / "generator.pt", map_location="cpu", weights_only=True))
    return spec, G.eval()


def draw(G: Any, latent_dim: int, n: int, seed: int) -> np.ndarray:
    """``n`` samples ``(n, C, H, W)`` from fixed noise (``seed``): every run sees the same z."""
    import torch

    z = torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        out = torch.cat([G(chunk).float() for chunk in z.split(BATCH)])
    return out.clamp(-1, 1).numpy()


def reference(data: str, image_size: int, channels: int, n: int = N_REFERENCE, seed: int = 0):
    """Up to ``n`` real images of the dataset (a fixed random subset) and their labels (or
    ``None`` for an unlabelled dataset), as NumPy arrays."""
    from ganarch.data import load_dataset

    ds = load_dataset(data, image_size, channels)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(ds.images), min(n, len(ds.images)), replace=False))
    images = ds.images.cpu().numpy()[pick]
    labels = ds.labels.cpu().numpy()[pick] if ds.labels is not None else None
    return images, labels


# -- the cache -------------------------------------------------------------------------------


class ScoreCache:
    """The judge's scores per generator file, in one JSON file (written atomically)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.scores: dict[str, dict[str, float]] = {}
        if path.exists():
            try:
                saved = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise Refused(f"--cache: cannot read {path}: {exc}") from None
            if isinstance(saved, dict) and saved.get("version") == JUDGE_VERSION:
                self.scores = dict(saved.get("scores") or {})

    @staticmethod
    def key(run_dir: Path, context: str, n: int, seed: int) -> str:
        st = (run_dir / "generator.pt").stat()
        return f"{run_dir.resolve()}|{st.st_size}|{st.st_mtime_ns}|{context}|n={n}|z={seed}"

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"version": JUDGE_VERSION, "scores": self.scores}, indent=1)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".judge-", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, self.path)


class Judged:
    """Scores run folders with one judge (built on first use), through the cache."""

    def __init__(
        self,
        data: str,
        image_size: int,
        channels: int,
        cache: ScoreCache,
        *,
        n: int = N_SAMPLES,
        seed: int = 0,
        log: Callable[[str], None] = lambda s: None,
    ) -> None:
        self.data, self.image_size, self.channels = data, image_size, channels
        self.cache, self.n, self.seed, self.log = cache, n, seed, log
        self.context = f"{data}|{image_size}x{channels}"
        self._judge: Any = None
        self.unusable: list[str] = []  # generator files that would not load, with why
        self._reference: tuple[np.ndarray, np.ndarray | None] | None = None

    def reference(self) -> tuple[np.ndarray, np.ndarray | None]:
        if self._reference is None:
            self._reference = reference(self.data, self.image_size, self.channels)
        return self._reference

    @property
    def unlabelled(self) -> bool:
        """The dataset has no labels (so no classifier metric)."""
        return self.reference()[1] is None

    def judge(self) -> Any:
        """The judge, built on first use (fitting its classifier takes seconds)."""
        if self._judge is None:
            import score_judge

            self._judge = score_judge.Judge(*self.reference())
        return self._judge

    def score(self, run_dir: Path) -> dict[str, float] | None:
        """The judge's scores of one seed's generator; ``None`` when the folder holds no
        trained generator (a run that failed before saving one)."""
        if not (run_dir / "generator.pt").is_file() or not (run_dir / "spec.json").is_file():
            return None
        key = ScoreCache.key(run_dir, self.context, self.n, self.seed)
        hit = self.cache.scores.get(key)
        wanted = ("fd", "nn1") if self.unlabelled else METRICS
        if isinstance(hit, dict) and all(_finite(hit.get(m)) for m in wanted):
            return hit  # (an entry missing a metric is judged again)
        try:
            spec, G = load_generator(run_dir)
        except Exception as exc:  # a damaged file fails unpickling in many ways; a spec
            # whose plugin block is not installed here fails to build
            self.log(f"cannot load the generator in {run_dir}: {exc}")
            why = f"{type(exc).__name__}: {exc}".splitlines()[0][:160]
            self.unusable.append(f"{run_dir} ({why})")
            return None
        shape = (spec.channels, spec.image_size)
        if shape != (self.channels, self.image_size):
            raise Refused(
                f"{run_dir}: a {shape[0]}×{shape[1]}² generator, but the study's images are "
                f"{self.channels}×{self.image_size}²"
            )
        t0 = time.perf_counter()
        scores = self.judge().score(draw(G, spec.latent_dim, self.n, self.seed))
        self.cache.scores[key] = {k: float(v) for k, v in scores.items()}
        self.cache.save()  # after each: an interrupted run keeps what it judged
        self.log(f"judged {run_dir} in {time.perf_counter() - t0:.1f} s")
        return self.cache.scores[key]


# -- the comparison --------------------------------------------------------------------------


def _effect(e: Any) -> dict[str, Any]:
    scale = max(1.0, abs(e.mean_paper or 0.0), abs(e.mean_alt or 0.0))
    return {
        "effect": e.effect,
        "ci_low": e.ci_low,
        "ci_high": e.ci_high,
        "df": e.df,
        "scale": scale,
    }


def better_sign(d: Mapping[str, Any], direction: int) -> int | None:
    """+1 when the effect ``d`` says the paper's side is better, −1 the alternative, 0 when
    it is rounding noise (within ganarch's no-variance tolerance of the scores' size);
    ``direction`` is +1 when higher is better. ``None``: no effect."""
    from ganarch.analysis.stats import NO_VARIANCE

    effect = d.get("effect")
    if effect is None or not math.isfinite(effect):
        return None
    if abs(effect) <= NO_VARIANCE * d.get("scale", 1.0):
        return 0
    return int(np.sign(effect * direction))


def _sign(d: Mapping[str, Any]) -> int | None:
    return better_sign(d, 1 if d["higher_is_better"] else -1)


def signs_agree(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool | None:
    """Whether two effects (each with ``higher_is_better``) favour the same side. ``None``
    when either has no effect or a negligible one (it favours no side: nothing to agree on)."""
    sa, sb = _sign(a), _sign(b)
    if not sa or not sb:  # None or 0
        return None
    return sa == sb


VERDICTS = ("confirmed", "contradicted", "inconclusive")


def compare(row: dict[str, Any], metrics: Sequence[str]) -> None:
    """Adds per judge metric to a claim's row: ``signs_agree`` (see ``signs_agree``),
    ``decided`` (either side's verdict is confirmed or contradicted; ``None`` when either has
    no verdict) and ``verdicts_agree`` (the same verdict, only where ``decided``; ``None``
    otherwise: two inconclusive verdicts are not counted as agreement)."""
    g = row["ganarch"]
    row["signs_agree"], row["verdicts_agree"], row["decided"] = {}, {}, {}
    for m in metrics:
        j = row["judge"].get(m)
        row["signs_agree"][m] = signs_agree(g, j) if j is not None else None
        judged = (
            j is not None
            and _sign(g) is not None
            and _sign(j) is not None
            and g["verdict"] in VERDICTS
            and j["verdict"] in VERDICTS
        )
        if not judged:
            row["decided"][m] = row["verdicts_agree"][m] = None
            continue
        decided = (g["verdict"], j["verdict"]) != ("inconclusive", "inconclusive")
        row["decided"][m] = decided
        row["verdicts_agree"][m] = (g["verdict"] == j["verdict"]) if decided else None


def has_signal(rows: Sequence[Mapping[str, Any]], metric: str) -> bool:
    """Whether any claim's judge effect of ``metric`` is non-negligible (see
    ``better_sign``); if none is, the metric did not tell the runs apart."""
    return any(_sign(r["judge"][metric]) for r in rows if r["judge"].get(metric) is not None)


def drop_no_signal(rows: Sequence[dict[str, Any]], metrics: Sequence[str]) -> dict[str, bool]:
    """Per metric, whether it has a signal; a metric without one gets ``None`` (no signal)
    for every claim's agreement, not "agree" or "disagree"."""
    signal = {m: has_signal(rows, m) for m in metrics}
    for r in rows:
        for m in metrics:
            if not signal[m]:
                r["signs_agree"][m] = r["verdicts_agree"][m] = r["decided"][m] = None
    return signal


def summary(
    rows: Sequence[dict[str, Any]], metrics: Sequence[str], signal: Mapping[str, bool]
) -> dict[str, dict[str, Any]]:
    """Per judge metric: ``signal``; on how many claims the signs agree (``signs_agree``) of
    those where both effects are non-negligible (``signs_of``); on how many the verdicts agree
    (``verdicts_agree``) of those either side decides (``decided``); and how many are
    inconclusive on both sides (``both_inconclusive``, counted in neither)."""
    out = {}
    for m in metrics:
        signs = [r["signs_agree"][m] for r in rows if r["signs_agree"].get(m) is not None]
        verdicts = [r["verdicts_agree"][m] for r in rows if r["verdicts_agree"].get(m) is not None]
        out[m] = {
            "signal": signal[m],
            "signs_agree": sum(signs),
            "signs_of": len(signs),
            "verdicts_agree": sum(verdicts),
            "decided": len(verdicts),
            "both_inconclusive": sum(r["decided"].get(m) is False for r in rows),
        }
    return out


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return float(spearmanr(a, b).statistic)


def design_fit(
    design: Any,
    runs: Sequence[int],
    values: Sequence[float],
    names: Sequence[str],
    higher_is_better: bool,
) -> list[tuple[Any, str]]:
    """Per design factor, ``(effect, verdict)`` of ``values`` (one per run in ``runs``) with
    the model and verdict rule of ganarch's designed-study table."""
    from ganarch.analysis import designed

    fit = designed.fit_design(design, list(runs), list(values), names).main
    return [(e, designed.design_verdict(e, higher_is_better=higher_is_better)) for e in fit.effects]


def judge_design_effects(
    design: Any,
    per_run: Mapping[int, Sequence[Mapping[str, float]]],
    names: Sequence[str],
    metrics: Sequence[str] = METRICS,
) -> dict[str, list[dict[str, Any]]]:
    """Per judge metric, per design factor: the effect, interval and verdict of the metric
    as ganarch's designed-study table computes them for its score, with each run's mean over
    its seeds (``per_run``: run -> the judge's scores of each seed) as the response and the
    metric's own direction (fd and nn1: lower is better)."""
    import score_judge

    present = sorted(per_run)
    out = {}
    for m in metrics:
        higher = score_judge.DIRECTIONS[m] > 0
        y = [float(np.mean([s[m] for s in per_run[run]])) for run in present]
        out[m] = [
            {**_effect(e), "verdict": v, "higher_is_better": higher}
            for e, v in design_fit(design, present, y, names, higher)
        ]
    return out


def trial_folder(folder: Path, trial: Any) -> Path:
    """A trial's artifacts folder under ``folder``: the name the search recorded for it
    (``artifacts``), else ``trial-N`` (the search's naming); ``folder`` replaces the recorded
    parent, so a moved runs folder still works with ``--out``."""
    recorded = (trial.user_attrs or {}).get("artifacts")
    return folder / (Path(str(recorded)).name if recorded else f"trial-{trial.number}")


def judge_designed(
    storage: str, name: str, out: str | None, cache_path: str | None, n: int, seed: int, log
) -> dict[str, Any]:
    """The comparison for a designed study (see the module docstring)."""
    import score_judge

    from ganarch.analysis import designed, rules
    from ganarch.search import results

    study = results.open_study(name, storage)
    design = designed.design_of(study.user_attrs)
    if design is None:
        raise Refused(
            f"--study {name}: not a designed study (run with --sampler fractional, "
            "fractional32 or factorial); the judge is compared with controlled evidence only"
        )
    record = study.user_attrs.get("ganarch") or {}
    try:
        data, image_size, channels = (
            str(record["data"]),
            int(record["image_size"]),
            int(record["channels"]),
        )
    except (KeyError, TypeError, ValueError):
        raise Refused(
            f"--study {name}: its record names no dataset, image size and channels "
            "(data, image_size, channels): not a study ganarch search made"
        ) from None
    folder = Path(out or record.get("out") or "")
    if not out and not record.get("out"):
        raise Refused(f"--study {name}: the study recorded no --out folder; pass --out")
    if not folder.is_dir():
        raise Refused(f"--out: {folder} is not a folder (the study's trial artifacts)")
    table = rules.rules_table(study)
    score, index, _ = rules.study_score(study)
    trials = results.trials(study)
    runs = designed.design_runs(trials, index, per_seed=score == "objective")
    by_number = {t.number: t for t in trials}
    cache = ScoreCache(Path(cache_path) if cache_path else folder / CACHE_NAME)
    judged = Judged(data, image_size, channels, cache, n=n, seed=seed, log=log)
    per_run: dict[int, list[dict[str, float]]] = {}
    missing: list[str] = []
    for r in runs:
        scores = [judged.score(d) for d in seed_dirs(trial_folder(folder, by_number[r.trial]))]
        if scores and all(s is not None for s in scores):
            per_run[r.run] = scores  # type: ignore[assignment]
        else:
            missing.append(f"run {r.run} (trial {r.trial})")
    metrics = [m for m in METRICS if not (m == "classifier" and judged.unlabelled)]
    names = [str(f.claim) if f.claim is not None else f.name for f in design.factors]
    column = {f.claim: j for j, f in enumerate(design.factors) if f.claim is not None}
    present = [r.run for r in runs if r.run in per_run]
    if not present:
        raise Refused(
            f"--out: no trained generator under {folder} for any of the study's {len(runs)} "
            "runs (expected TRIAL/[seed-S/]generator.pt and spec.json)"
        )
    judge_fits = judge_design_effects(design, {r: per_run[r] for r in present}, names, metrics)
    # ganarch's quality alone (each trial's mean over seeds), with the same fit: the judge
    # looks at final samples only, the objective also at stability.
    quality = [by_number[r.trial].user_attrs.get("quality") for r in runs]
    q_runs = [r.run for r, q in zip(runs, quality, strict=True) if _finite(q)]
    q_fit = design_fit(design, q_runs, [float(q) for q in quality if _finite(q)], names, True)
    rows = []
    for row in table.rows:
        j = column.get(row.claim.id)
        entry = _ganarch_row(row, table.score, table.higher_is_better)
        entry["judge"] = {}
        if j is not None:
            entry["judge"] = {m: judge_fits[m][j] for m in metrics}
            e, v = q_fit[j]
            entry["ganarch_quality"] = {**_effect(e), "verdict": v, "higher_is_better": True}
        compare(entry, metrics)
        rows.append(entry)
    response = {r.run: r.response for r in runs}
    run_rows = [
        {
            "run": r.run,
            "trial": r.trial,
            "ganarch": r.response,
            "ganarch_quality": by_number[r.trial].user_attrs.get("quality"),
            "judge_seeds": per_run.get(r.run),
        }
        for r in runs
    ]
    notes = [
        f"judge: {n} samples per seed from fixed noise (seed {seed}) on the CPU against up to "
        f"{N_REFERENCE} real {data} images at {image_size}×{image_size}, {channels} "
        "channel(s); each run's mean over its "
        f"seeds, fitted as ganarch fits its {table.score} ({len(present)} of {len(runs)} runs)"
    ]
    if judged.unlabelled:
        notes.append(f"{data} has no labels: no classifier metric")
    if missing:
        notes.append(
            "runs with no usable generator, left out of the judge's fit: " + ", ".join(missing)
        )
    if judged.unusable:
        notes.append("generators that would not load: " + "; ".join(judged.unusable))
    notes += saturation([s for r in present for s in per_run[r]], "seeds")
    return _result(
        source=f"designed study {name} ({table.evidence})",
        rows=rows,
        metrics=metrics,
        notes=notes,
        runs=run_rows,
        run_agreement={
            m: spearman(
                [response[r] for r in present],
                [
                    score_judge.DIRECTIONS[m] * float(np.mean([s[m] for s in per_run[r]]))
                    for r in present
                ],
            )
            for m in metrics
        },
    )


def judge_ablation(folder: str, cache_path: str | None, n: int, seed: int, log) -> dict[str, Any]:
    """The comparison for a ``ganarch ablate`` folder: paired t over seeds, per claim."""
    import score_judge

    from ganarch.analysis import CLAIMS, t_paired, verdict
    from ganarch.analysis.ablation import BASELINE, SETTINGS_FILE, ablation_table, load_runs
    from ganarch.builder import GANSpec

    out = Path(folder)
    try:
        settings = json.loads((out / SETTINGS_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise Refused(f"--ablate: {out} holds no readable {SETTINGS_FILE} ({exc})") from None
    try:
        data = str(settings["data"])
        base = GANSpec.from_dict(settings["base_spec"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise Refused(
            f"--ablate: {out / SETTINGS_FILE} is not a ganarch ablate settings file (needs data "
            f"and base_spec; {type(exc).__name__}: {exc})"
        ) from None
    saved = load_runs(out)
    for variant, entry in saved.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("runs", {}), dict):
            raise Refused(f"--ablate: {out / 'variants' / variant}.json is not a variant record")
    # The claims this ablation ran (``--claims`` may have picked a few), in ganarch's order.
    ran = {e.get("claim") for e in saved.values()}
    table = ablation_table(out, claims=[c for c in CLAIMS if c.id in ran])
    cache = ScoreCache(Path(cache_path) if cache_path else out / CACHE_NAME)
    judged = Judged(data, base.image_size, base.channels, cache, n=n, seed=seed, log=log)

    def seed_scores(variant: str) -> dict[str, dict[str, float]]:
        got = {}
        for k in (saved.get(variant) or {}).get("runs", {}):
            s = judged.score(out / "runs" / variant / f"seed-{k}")
            if s is not None:
                got[k] = s
        return got

    paper = seed_scores(BASELINE)
    if not paper:
        raise Refused(
            f"--ablate: no usable generator for the baseline ({out / 'runs' / BASELINE}/seed-S/"
            "generator.pt): nothing to pair the variants with"
        )
    metrics = [m for m in METRICS if not (m == "classifier" and judged.unlabelled)]
    rows = []
    run_rows = []
    for row in table.rows:
        variant = next((v for v, e in saved.items() if e.get("claim") == row.claim.id), None)
        alt = seed_scores(variant) if variant else {}
        keys = sorted(set(paper) & set(alt), key=int)
        entry = _ganarch_row(row, table.score, table.higher_is_better)
        entry["judge"] = {}
        for m in metrics:
            e = t_paired([paper[k][m] for k in keys], [alt[k][m] for k in keys])
            up = score_judge.DIRECTIONS[m] > 0
            entry["judge"][m] = {**_effect(e), "verdict": verdict(e, higher_is_better=up)}
            entry["judge"][m]["higher_is_better"] = up
        compare(entry, metrics)
        rows.append(entry)
        run_rows.append({"variant": variant, "seeds": keys, "judge_seeds": [alt[k] for k in keys]})
    run_rows.insert(
        0,
        {
            "variant": BASELINE,
            "seeds": sorted(paper, key=int),
            "judge_seeds": [paper[k] for k in sorted(paper, key=int)],
        },
    )
    notes = [
        f"judge: {n} samples per seed from fixed noise (seed {seed}) on the CPU against up to "
        f"{N_REFERENCE} real {data} images; paired t over seeds as ganarch's ablation"
    ]
    if judged.unlabelled:
        notes.append(f"{data} has no labels: no classifier metric")
    if judged.unusable:
        notes.append(
            "generators that would not load (their pairs dropped): " + "; ".join(judged.unusable)
        )
    notes += saturation([s for x in run_rows for s in x["judge_seeds"]], "runs")
    return _result(
        source=f"ablation {out} ({table.evidence})",
        rows=rows,
        metrics=metrics,
        notes=notes,
        runs=run_rows,
    )


#: nn1 from here up: the judge tells (nearly) every sample from a real image.
NN1_CEILING = 0.99


def saturation(scores: Sequence[Mapping[str, float]], what: str) -> list[str]:
    """A note when the 1-NN test is at its ceiling for most of the generators judged: then
    its effects rest on the few below it, not on a graded comparison of every run."""
    high = sum(s["nn1"] >= NN1_CEILING for s in scores)
    if not scores or high * 2 <= len(scores):
        return []
    return [
        f"nn1 is {NN1_CEILING} or more (nearly every sample told from a real image) in {high} "
        f"of {len(scores)} {what}: its effects rest on the {len(scores) - high} below that"
    ]


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _ganarch_row(row: Any, score: str, higher: bool) -> dict[str, Any]:
    return {
        "claim": row.claim.id,
        "name": row.claim.name,
        "ganarch": {
            **_effect(row.effect),
            "score": score,
            "higher_is_better": higher,
            "verdict": row.verdict,
            "shown_verdict": row.shown_verdict,
        },
    }


def _result(**parts: Any) -> dict[str, Any]:
    signal = drop_no_signal(parts["rows"], parts["metrics"])
    parts["summary"] = summary(parts["rows"], parts["metrics"], signal)
    parts["judge_version"] = JUDGE_VERSION
    return parts


# -- output ----------------------------------------------------------------------------------


def _cell(d: Mapping[str, Any] | None) -> str:
    if d is None or d.get("effect") is None:
        return "—"
    ci = (
        f" [{d['ci_low']:+.3g}, {d['ci_high']:+.3g}]"
        if d.get("ci_low") is not None and d.get("ci_high") is not None
        else ""
    )
    return f"{d['effect']:+.3g}{ci} {d['verdict']}"


def _yes(values: Mapping[str, bool | None], metrics: Sequence[str], decided=None) -> str:
    """yes / no per metric; "—" for nothing to compare, "(inc.)" for inconclusive on both
    sides (given ``decided``)."""

    def one(m: str) -> str:
        if values.get(m) is not None:
            return "yes" if values[m] else "no"
        return "(inc.)" if decided is not None and decided.get(m) is False else "—"

    return ", ".join(one(m) for m in metrics)


def markdown(result: Mapping[str, Any]) -> str:
    metrics = result["metrics"]
    rows = result["rows"]
    score = rows[0]["ganarch"]["score"] if rows else "score"
    lower = {"fd", "nn1"}
    head = [
        "claim",
        f"ganarch {score}",
        *(f"judge {m} ({'lower' if m in lower else 'higher'} is better)" for m in metrics),
        f"signs agree ({', '.join(metrics)})",
        f"verdicts agree ({', '.join(metrics)})",
    ]
    lines = [f"Judge vs ganarch: {result['source']}", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        cells = [f"{r['claim']} {r['name']}", _cell(r["ganarch"])]
        cells += [_cell(r["judge"].get(m)) for m in metrics]
        cells += [
            _yes(r["signs_agree"], metrics),
            _yes(r["verdicts_agree"], metrics, r["decided"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    parts = []
    for m, s in result["summary"].items():
        if not s["signal"]:
            parts.append(f"{m}: — (no signal: every effect negligible)")
            continue
        parts.append(
            f"{m}: signs agree on {s['signs_agree']} of {s['signs_of']}; "
            f"verdicts agree on {s['verdicts_agree']} of {s['decided']} decided "
            f"({s['both_inconclusive']} inconclusive on both sides)"
        )
    lines.append("Agreement per judge metric — " + "; ".join(parts) + ".")
    lines.append(
        "(Signs: over claims where both effects are non-negligible, above 1e-9 × the scores' "
        "size. Verdicts: over claims either side confirms or contradicts.)"
    )
    quality = [r for r in rows if "ganarch_quality" in r]
    if quality:
        same = {}
        for m in metrics:
            found = [signs_agree(r["ganarch_quality"], r["judge"][m]) for r in quality]
            agree = [a for a in found if a is not None]
            no_signal = not result["summary"][m]["signal"]
            same[m] = "—" if no_signal else f"{sum(agree)} of {len(agree)}"
        lines.append(
            "With ganarch's quality alone (same fit) in place of its objective, signs agree on: "
            + ", ".join(f"{m} {v}" for m, v in same.items())
            + "."
        )
    if result.get("run_agreement"):
        lines.append(
            "Spearman over runs between ganarch's per-run score and each judge metric "
            "(made higher-is-better): "
            + ", ".join(
                f"{m} {'—' if v is None else f'{v:+.2f}'}"
                for m, v in result["run_agreement"].items()
            )
            + "."
        )
    lines += [f"Note: {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"


def render_saved(path: str) -> int:
    """The Markdown of a saved ``--json`` output (one result or a list of them): the same
    tables as the run that wrote it, without judging anything again."""
    try:
        saved = json.loads(Path(path).read_text())
        results = saved if isinstance(saved, list) else [saved]
        text = "\n".join(markdown(r) for r in results)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        print(
            f"error: --from-json: {path} is not a judge_rules --json output ({exc})",
            file=sys.stderr,
        )
        return 2
    print(text, end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--storage", help="the study's storage (journal file, sqlite:///..., ...)")
    p.add_argument("--study", help="a designed study's name")
    p.add_argument("--out", help="the study's trial artifacts folder (default: as recorded)")
    p.add_argument("--ablate", help="a `ganarch ablate` --out folder (also or instead)")
    p.add_argument("--cache", help=f"the judge's score cache (default: RUNS/{CACHE_NAME})")
    p.add_argument("--n", type=int, default=N_SAMPLES, help="samples per generator")
    p.add_argument("--seed", type=int, default=0, help="the noise seed")
    p.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument(
        "--from-json",
        metavar="FILE",
        help="print the Markdown of a saved --json output (judges nothing)",
    )
    args = p.parse_args(argv)
    if args.from_json:
        return render_saved(args.from_json)
    if not args.study and not args.ablate:
        p.error("pass --study (with --storage) and/or --ablate")
    if args.study and not args.storage:
        p.error("--study needs --storage")
    if args.n < 10:
        p.error("--n: at least 10 samples")

    import torch

    threads = os.environ.get("OMP_NUM_THREADS", "1")
    if threads.strip().isdigit() and int(threads) > 0:  # anything else: torch's default
        torch.set_num_threads(int(threads))
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    out: list[dict[str, Any]] = []
    try:
        if args.study:
            out.append(
                judge_designed(
                    args.storage, args.study, args.out, args.cache, args.n, args.seed, log
                )
            )
        if args.ablate:
            cache = args.cache if not args.study else None  # one cache file per runs folder
            out.append(judge_ablation(args.ablate, cache, args.n, args.seed, log))
    except Exception as exc:  # bad input: one line, exit 2 (ganarch's own errors too)
        from ganarch.errors import GanarchError

        if isinstance(exc, Refused | GanarchError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise
    if args.json:
        print(json.dumps(out if len(out) > 1 else out[0], indent=2))
    else:
        print("\n".join(markdown(r) for r in out), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
