"""The controlled experiment: the paper's DCGAN, one rule flipped at a time, K paired seeds.

``ablate()`` trains the paper's spec ("paper") and, for each claim, the same spec with that
claim's one documented change (``Claim.alternative``, e.g. claim 7: ``beta1=0.9``), each with
the same seeds. Seed ``s`` of a variant is paired with seed ``s`` of the paper's spec (same
initial noise stream, same batches), and the effect is the mean per-seed difference of the
objective with a t-interval on the paired differences (``ganarch.analysis.stats``; a
bootstrap over a handful of seeds would be far too narrow). Each claim's flip rate
(``stats.flip_rate``, exact for the paired t) says how likely a re-run with as many new seeds
is to give another verdict; from 4 seeds the leave-one-seed-out refits measure it too.

Every finished run is saved at once to ``OUT/variants/<variant>.json`` (and its run directory
under ``OUT/runs/``), so an interrupted ablation resumes where it stopped when run again with
the same settings; ``OUT/ablation.json`` records those settings and a different setup in the
same directory is refused. A run that raises a failure tied to its configuration (CUDA out of
memory, an invalid spec) is recorded with its reason and no score: its seed's pair is dropped.
A run that diverged counts with the score the trainer gave it.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ganarch.analysis.claims import CLAIMS, Claim
from ganarch.analysis.rules import (
    EVIDENCE_ABLATION,
    RuleRow,
    RulesTable,
    flip_rate_note,
    floor_check,
)
from ganarch.analysis.stats import N_MIN, flip_rate, t_paired, verdict
from ganarch.builder import GANSpec
from ganarch.errors import GanarchError, SpecError
from ganarch.templates import PAPER_CHOICES, dcgan_spec

__all__ = [
    "BASELINE",
    "DEFAULT_OUT",
    "SCORE",
    "Variant",
    "ablate",
    "ablation_table",
    "load_runs",
    "variants",
]

BASELINE = "paper"
DEFAULT_OUT = "ganarch-ablation"
SCORE = "objective"  # higher is better
SETTINGS_FILE = "ablation.json"
_FORMAT = 1

#: ``train_fn(spec, *, data, steps, seed, device, out_dir) -> result`` where the result has
#: ``objective`` (and ideally ``quality``, ``stability``, ``metrics``) as attributes or keys.
TrainFn = Callable[..., Any]


@dataclass(frozen=True)
class Variant:
    name: str  # "paper" or "claim-<id>-<slug>"
    claim: Claim | None
    choices: Mapping[str, Any]  # the template choices, training settings included
    spec: GANSpec


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _base_choices(spec: GANSpec) -> dict[str, Any]:
    meta = dict(spec.meta or {})
    if meta.get("template") != "dcgan" or not isinstance(meta.get("choices"), Mapping):
        raise GanarchError(
            "ablate needs a spec made by the dcgan template (its meta.choices say which rule "
            "is which); build it with ganarch.dcgan_spec(...)"
        )
    return {**PAPER_CHOICES, **dict(meta["choices"]), **spec.training.to_dict()}


def _build(spec: GANSpec, choices: Mapping[str, Any]) -> GANSpec:
    width = int((spec.meta or {}).get("width", 64))
    return dcgan_spec(
        image_size=spec.image_size,
        channels=spec.channels,
        latent_dim=spec.latent_dim,
        width=width,
        **dict(choices),
    )


def variants(base_spec: GANSpec, claims: Sequence[Claim] = CLAIMS) -> list[Variant]:
    """The baseline and one variant per claim (the claim's alternative applied to the base)."""
    base = _base_choices(base_spec)
    out = [Variant(BASELINE, None, base, _build(base_spec, base))]
    for claim in claims:
        choices = {**base, **dict(claim.alternative)}
        if claim.side(base) != "paper":
            raise GanarchError(
                f"the base spec does not stand on the paper's side of claim {claim.id} "
                f"({claim.paper_side}); ablate starts from the paper's DCGAN"
            )
        out.append(
            Variant(
                f"claim-{claim.id}-{_slug(claim.name)}", claim, choices, _build(base_spec, choices)
            )
        )
    return out


# -- persistence -------------------------------------------------------------------------------


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)  # an interrupted write never leaves a half file behind


def _settings(base_spec: GANSpec, data: str, steps: int, eval_every: int | None) -> dict[str, Any]:
    return {
        "format": _FORMAT,
        "data": data,
        "steps": steps,
        "eval_every": eval_every,
        "base_spec": base_spec.to_dict(),
    }


def _prepare_out(out: Path, settings: Mapping[str, Any], force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise GanarchError(f"{out} exists and is not a directory")
    if not out.parent.exists():
        raise GanarchError(f"{out.parent} does not exist")
    (out / "variants").mkdir(parents=True, exist_ok=True)
    path = out / SETTINGS_FILE
    if path.exists() and not force:
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise GanarchError(f"{path}: cannot read the ablation settings ({exc})") from exc
        if old != json.loads(json.dumps(settings, default=str)):
            differ = sorted(k for k in {*old, *settings} if old.get(k) != settings.get(k))
            raise GanarchError(
                f"{out} holds an ablation with other settings ({', '.join(differ)} differ); "
                "use another --out, or --force to start it over"
            )
    elif force:
        for f in (out / "variants").glob("*.json"):
            f.unlink()
    _write_json(path, settings)


def load_runs(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Every saved variant of an ablation directory: ``{variant: {"runs": {seed: run}}}``."""
    runs: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(out_dir, "variants").glob("*.json")):
        with contextlib.suppress(OSError, json.JSONDecodeError):
            runs[path.stem] = json.loads(path.read_text())
    return runs


# -- training ----------------------------------------------------------------------------------


def _value(result: Any, key: str) -> Any:
    if isinstance(result, Mapping):
        return result.get(key)
    return getattr(result, key, None)


def _finite_or_none(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _default_train() -> TrainFn:
    """``ganarch.run.train`` with one dataset and one evaluator shared by every run."""
    from ganarch.run import train

    shared: dict[tuple[Any, ...], tuple[Any, Any, Any]] = {}

    def run(
        spec: GANSpec,
        *,
        data: str,
        steps: int,
        seed: int,
        device: str | None,
        out_dir: Path,
        eval_every: int | None = None,
    ):
        key = (data, spec.image_size, spec.channels, device)
        if key not in shared:
            from ganarch.data import load_dataset
            from ganarch.device import choose_device
            from ganarch.score import Evaluator

            dev = choose_device(device)
            dataset = load_dataset(
                data, image_size=spec.image_size, channels=spec.channels, device=dev
            )
            shared[key] = (dev, dataset, Evaluator(dataset, device=dev))
        dev, dataset, evaluator = shared[key]
        # overwrite: a run directory left by an interrupted run holds no finished result
        return train(
            spec,
            dataset,
            steps,
            seed=seed,
            device=dev,
            out_dir=out_dir,
            overwrite=True,
            evaluator=evaluator,
            eval_every=eval_every,
            progress=False,  # one live display at a time: the ablation's own
        )

    return run


def _run_record(result: Any) -> dict[str, Any]:
    record = {k: _finite_or_none(_value(result, k)) for k in ("objective", "quality", "stability")}
    metrics = _value(result, "metrics")
    if isinstance(metrics, Mapping):
        record["metrics"] = json.loads(json.dumps(dict(metrics), default=str))
    failure = _value(result, "failure") or ("diverged" if _value(result, "diverged") else None)
    if failure:
        record["failure"] = str(failure)
    return record


def _oom_types() -> tuple[type[BaseException], ...]:
    try:
        import torch

        return (torch.cuda.OutOfMemoryError,)
    except (ImportError, AttributeError):
        return ()


@contextlib.contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Callable[[str], None]]:
    if not enabled:
        yield lambda description: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]ablate[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as bar:
        task = bar.add_task("", total=total)

        def advance(description: str) -> None:
            if description.startswith("start "):
                bar.update(task, description=description[6:])
            else:
                bar.update(task, advance=1, description=description)

        yield advance


def ablate(
    base_spec: GANSpec | None = None,
    *,
    data: str = "digits",
    seeds: Sequence[int] = (0, 1, 2),
    steps: int = 500,
    claims: Sequence[Claim] = CLAIMS,
    out_dir: str | Path = DEFAULT_OUT,
    device: str | None = None,
    force: bool = False,
    progress: bool = True,
    train_fn: TrainFn | None = None,
    eval_every: int | None = None,
) -> RulesTable:
    """Train the paper's DCGAN and one variant per claim with the same seeds; the rules table.

    ``base_spec`` defaults to ``dcgan_spec(32, channels=1, width=32)`` (the paper's choices);
    it must come from the dcgan template. Runs already saved in ``out_dir`` are not trained
    again. ``eval_every`` is passed to the trainer (default: its own, about 5 evaluations per
    run; the stability score needs several). ``train_fn`` replaces ``ganarch.run.train``
    (tests, custom trainers); it is called as ``train_fn(spec, data=, steps=, seed=, device=,
    out_dir=)`` plus ``eval_every=`` when given.

    Example::

        table = ablate(dcgan_spec(16, channels=1, width=16), data="digits", seeds=[0, 1, 2],
                       steps=300, claims=[get_claim(3), get_claim(7)], out_dir="abl")
        for row in table.rows:
            print(row.claim.name, row.effect.effect, row.verdict)
    """
    if base_spec is None:
        base_spec = dcgan_spec(32, channels=1, width=32)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise GanarchError("ablate needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise GanarchError(f"seeds must differ, got {seeds}")
    if steps < 1:
        raise GanarchError(f"steps must be at least 1, got {steps}")
    if eval_every is not None and eval_every < 1:
        raise GanarchError(f"eval_every must be at least 1, got {eval_every}")
    out = Path(out_dir)
    todo = variants(base_spec, claims)
    _prepare_out(out, _settings(base_spec, data, steps, eval_every), force)
    train = train_fn or _default_train()
    oom = _oom_types()

    saved = load_runs(out)
    pending = [
        (v, s) for v in todo for s in seeds if str(s) not in saved.get(v.name, {}).get("runs", {})
    ]
    with _progress(progress, len(pending)) as advance:
        for variant, seed in pending:
            advance(f"start {variant.name} seed {seed}")
            record_path = out / "variants" / f"{variant.name}.json"
            entry = saved.setdefault(
                variant.name,
                {
                    "variant": variant.name,
                    "claim": variant.claim.id if variant.claim else None,
                    "choices": json.loads(json.dumps(dict(variant.choices), default=str)),
                    "runs": {},
                },
            )
            run_dir = out / "runs" / variant.name / f"seed-{seed}"
            kwargs = {"eval_every": eval_every} if eval_every is not None else {}
            try:
                result = train(
                    variant.spec,
                    data=data,
                    steps=steps,
                    seed=seed,
                    device=device,
                    out_dir=run_dir,
                    **kwargs,
                )
                record = _run_record(result)
            except SpecError as exc:
                record = {"objective": None, "failure": f"invalid spec: {exc}"}
            except oom:
                record = {"objective": None, "failure": "out of memory (CUDA)"}
            record["seed"] = seed
            record["artifacts"] = str(run_dir)
            entry["runs"][str(seed)] = record
            _write_json(record_path, entry)
            advance(f"{variant.name} seed {seed}")
    return ablation_table(out, seeds=seeds, claims=claims)


def reseed_flips(paper: Sequence[float], alt: Sequence[float]) -> tuple[int, int] | None:
    """``(flips, refits)``: how many leave-one-seed-out t-intervals give another verdict than
    all seeds together. ``None`` below ``N_MIN + 1`` usable pairs (a refit would have too few
    seeds for any verdict)."""
    pairs = [
        (p, a) for p, a in zip(paper, alt, strict=True) if math.isfinite(p) and math.isfinite(a)
    ]
    if len(pairs) < N_MIN + 1:
        return None
    full = verdict(t_paired([p for p, _ in pairs], [a for _, a in pairs]))
    flips = 0
    for i in range(len(pairs)):
        rest = pairs[:i] + pairs[i + 1 :]
        flips += verdict(t_paired([p for p, _ in rest], [a for _, a in rest])) != full
    return flips, len(pairs)


def ablation_table(
    out_dir: str | Path,
    *,
    seeds: Sequence[int] | None = None,
    claims: Sequence[Claim] = CLAIMS,
) -> RulesTable:
    """The rules table of the runs saved in an ablation directory (paired by seed)."""
    out = Path(out_dir)
    saved = load_runs(out)
    base = saved.get(BASELINE, {}).get("runs", {})
    notes: list[str] = []
    rows: list[RuleRow] = []
    n_runs = 0
    for claim in claims:
        entry = next((v for v in saved.values() if v.get("claim") == claim.id), None)
        runs = (entry or {}).get("runs", {})
        keys = (
            [str(s) for s in seeds] if seeds is not None else sorted(set(base) & set(runs), key=int)
        )
        pairs = [(base[k].get(SCORE), runs[k].get(SCORE)) for k in keys if k in base and k in runs]
        paper = [math.nan if p is None else p for p, _ in pairs]
        alt = [math.nan if a is None else a for _, a in pairs]
        effect = t_paired(paper, alt)
        failed = [
            f"seed {k}: {runs[k]['failure']}" for k in keys if k in runs and runs[k].get("failure")
        ]
        if failed:
            notes.append(f"claim {claim.id} ({claim.name}): " + "; ".join(failed))
        rows.append(
            RuleRow(
                claim,
                effect,
                verdict(effect, higher_is_better=True),
                flips=reseed_flips(paper, alt),
                flip_rate=flip_rate(effect, higher_is_better=True),
            )
        )
        n_runs += len(runs)
    base_failed = [f"seed {k}: {r['failure']}" for k, r in base.items() if r.get("failure")]
    if base_failed:
        notes.insert(0, "paper's DCGAN: " + "; ".join(base_failed))
    notes.insert(0, f"score: {SCORE} (higher is better), one value per seed; pairs share a seed")
    # Every variant × seed value the table reads (the paper's DCGAN's once).
    values = {
        f"{name} seed {k}": float(r[SCORE])
        for name, v in saved.items()
        if name == BASELINE or v.get("claim") in {c.id for c in claims}
        for k, r in v.get("runs", {}).items()
        if seeds is None or k in {str(s) for s in seeds}
        if isinstance(r.get(SCORE), (int, float))
    }
    at_floor, floor_note = floor_check(SCORE, True, values)
    if floor_note:
        notes.insert(1, floor_note)
    if any(r.flip_rate is not None for r in rows):
        notes.append(flip_rate_note("a re-run of the ablation with as many new paired seeds"))
    if any(r.flips for r in rows):
        notes.append(
            "seed flips (after the rate in 'flips', e.g. '3% 1/4'; --json 'flips'): the "
            "measured re-seeding check, leave-one-seed-out refits whose verdict differs from "
            "the full one; a confirmed or contradicted verdict that flips is shown "
            "'(unstable)': not one to publish (each refit has one seed fewer and t(n-2), so a "
            "flip measures lost power as much as seed noise)"
        )
    else:
        notes.append(f"seed flips: not measured (needs {N_MIN + 1} or more paired seeds)")
    return RulesTable(
        tuple(rows),
        EVIDENCE_ABLATION,
        SCORE,
        True,
        None,
        str(out),
        n_runs + len(base),
        tuple(notes),
        at_floor=at_floor,
    )
