"""Fused seeds (``ganarch.fused``) and the step runner (``ganarch.stepper``): K seeds trained
as one stacked network equal K separate runs; specs that cannot be stacked fall back to
sequential seeds with the reason recorded; the CUDA-graph decision and its fallback.
CUDA-only checks at the end are skipped without a GPU."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from ganarch import dcgan_spec, hookimpl
from ganarch.data import load_dataset
from ganarch.errors import GanarchError
from ganarch.fused import fit_seeds, fusion_blocker, make_fused_step
from ganarch.run import train_seeds
from ganarch.stepper import StepOptions, Stepper, graph_blocker
from ganarch.training import fit, make_adam, make_step

SIZE = 16
FUSED = StepOptions(fused_seeds="on")
CPU = torch.device("cpu")


def _spec(**choices):
    return dcgan_spec(SIZE, channels=1, width=8, batch_size=32, **choices)


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", SIZE, 1)


def _close_state(a: nn.Module, b: nn.Module, atol: float = 1e-4) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        if sa[key].is_floating_point():
            torch.testing.assert_close(sa[key], sb[key], atol=atol, rtol=1e-4, msg=key)
        else:
            assert torch.equal(sa[key], sb[key]), key  # num_batches_tracked


def _tf32_off(monkeypatch) -> None:
    """Full float32 on CUDA, so a CUDA comparison can be as tight as float32 allows."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


def _near_state(a: nn.Module, b: nn.Module) -> None:
    """Two CUDA runs of the same training: different kernels (grouped or not, autotuned)
    round differently, and Adam's first steps are nearly sign(g), so a gradient near zero
    may flip one weight by up to 2 lr per step; a wrong batch, noise, statistic or Adam
    slice moves the typical weight, which the mean bounds."""
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        x, y = sa[key], sb[key]
        if not x.is_floating_point():
            assert torch.equal(x.cpu(), y.cpu()), key
            continue
        diff = (x.float() - y.float()).abs()
        assert float(diff.mean()) <= 1e-4, (key, float(diff.mean()))
        assert float(diff.max()) <= 5e-3, (key, float(diff.max()))


def _same_history(a: list[dict], b: list[dict], rel: float = 1e-3) -> None:
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for x, y in zip(a, b, strict=True):
        for key in ("loss_d", "loss_g", "d_real", "d_fake"):
            assert x[key] == pytest.approx(y[key], rel=rel, abs=1e-5), (x["step"], key)


# --- fused equals separate ------------------------------------------------------------------


@pytest.fixture
def one_thread():
    """One CPU thread while comparing fused with separate runs. With several threads a grouped
    convolution and K plain ones split their sums differently, and Adam's first steps (nearly
    sign(g)) turn a last-bit difference in a near-zero gradient into a weight moved by up to
    2 lr (seen on 2 cores: 138 of 25,600 weights, max 5e-4, mean 1e-5). One thread keeps the
    comparison as tight as float32 allows, so a wrong batch, noise or Adam slice still fails."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    "choices",
    [
        {},  # the paper's DCGAN: batchnorm (running statistics per seed), ReLU/LeakyReLU
        {"g_norm": "layernorm", "d_norm": "none", "d_dense_layers": 1, "dense_features": 32},
    ],
    ids=["batchnorm", "layernorm-dense"],
)
def test_fused_seeds_equal_separate_runs(data, choices, one_thread):
    """Each seed's weights, BatchNorm statistics, Adam state and batches are its own: three
    fused seeds end where three separate runs of ``fit`` end, history and weights."""
    spec = _spec(**choices)
    seeds = (0, 1, 5)
    separate = [
        fit(spec, data, 16, seed=s, device="cpu", eval_every=8, n_eval=64, progress=False)
        for s in seeds
    ]
    fused = fit_seeds(
        spec,
        data,
        16,
        seeds=seeds,
        device="cpu",
        eval_every=8,
        n_eval=64,
        progress=False,
        options=FUSED,
    )
    assert [r.seed for r in fused] == list(seeds)
    for one, many in zip(separate, fused, strict=True):
        assert many.engine["seeds"] == "fused" and many.engine["fused_k"] == 3
        assert [h["step"] for h in one.history] == [h["step"] for h in many.history] == [8, 16]
        for h1, h2 in zip(one.history, many.history, strict=True):
            for key in ("loss_d", "loss_g", "d_real", "d_fake"):
                assert h2[key] == pytest.approx(h1[key], rel=1e-4, abs=1e-5), key
        _close_state(one.generator, many.generator)
        _close_state(one.discriminator, many.discriminator)
    # and the seeds really differ from one another
    a, b = (r.generator.state_dict() for r in fused[:2])
    assert not all(torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())


def test_one_adam_over_stacked_params_is_k_adams():
    """Adam is elementwise: one Adam over tensors stacked along a seed axis takes exactly
    the steps K separate Adams take on the slices."""
    torch.manual_seed(0)
    ws = [torch.randn(5, 3, requires_grad=True) for _ in range(3)]
    stacked = torch.stack([w.detach().clone() for w in ws]).requires_grad_()
    opts = [torch.optim.Adam([w], lr=1e-2, betas=(0.5, 0.999)) for w in ws]
    opt = torch.optim.Adam([stacked], lr=1e-2, betas=(0.5, 0.999))
    for _ in range(5):
        grads = torch.randn(3, 5, 3)
        for w, o, g in zip(ws, opts, grads, strict=True):
            w.grad = g.clone()
            o.step()
        stacked.grad = grads.clone()
        opt.step()
    for i, w in enumerate(ws):
        torch.testing.assert_close(stacked[i], w, atol=1e-7, rtol=0)


def test_train_seeds_fused_writes_each_seed_and_records_the_engine(tmp_path, data):
    from ganarch.score import Evaluator

    evaluator = Evaluator(data, device="cpu", cache_dir=tmp_path / "cache")
    calls = []
    result = train_seeds(
        _spec(),
        data,
        10,
        seeds=(0, 1),
        device="cpu",
        out_dir=tmp_path / "run",
        evaluator=evaluator,
        eval_every=5,
        n_eval=64,
        progress=False,
        options=FUSED,
        on_eval=lambda seed, step, rec: calls.append((seed, step)),
    )
    assert calls == [(0, 5), (1, 5), (0, 10), (1, 10)]  # seeds in order at each point
    assert result.engine["seeds"] == "fused"
    for s in (0, 1):
        m = json.loads((tmp_path / "run" / f"seed-{s}" / "metrics.json").read_text())
        assert m["finished"] and m["seed"] == s and m["engine"]["seeds"] == "fused"
        assert (tmp_path / "run" / f"seed-{s}" / "generator.pt").is_file()
    top = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert top["engine"]["seeds"] == "fused" and top["seeds"] == [0, 1]


@pytest.mark.parametrize("fused", ["on", "off"])
def test_a_search_prunes_no_trial_before_half_its_seeds_steps(tmp_path, monkeypatch, fused):
    """The pruner's rule "no pruning before half of steps × seeds" holds whether the seeds
    train fused or one after another. Four finished trials far better than anything this one
    can reach make the median pruner stop it at its first chance; that chance must come
    only once its seeds have trained half their steps (fused seeds once reported seed K-1 at
    ``(K-1) * steps + s`` after s steps, and were pruned at a fifth of their training)."""
    import optuna

    from ganarch.search import TrialSettings
    from ganarch.search.objective import TrialRunner
    from ganarch.search.space import parse_space
    from ganarch.search.study import make_pruner

    monkeypatch.setenv("GANARCH_FUSED_SEEDS", fused)
    steps, k, every = 10, 2, 2
    settings = TrialSettings(
        data="digits",
        steps=steps,
        seeds=k,
        device="cpu",
        out=str(tmp_path / "runs"),
        eval_every=every,
        n_eval=64,
        image_size=SIZE,
        width=8,
    )
    space = parse_space(
        {
            "template": "dcgan",
            "image_size": SIZE,
            "width": 8,
            "latent_dim": 8,
            "fixed": {"batch_size": 32},
            "choices": {"lr": [2e-4, 3e-4]},
        }
    )
    budget = steps * k
    study = optuna.create_study(
        direction="maximize", pruner=make_pruner("median", settings, multi=False)
    )
    for _ in range(4):
        study.add_trial(
            optuna.trial.create_trial(
                params={},
                distributions={},
                value=1e9,
                intermediate_values={s: 1e9 for s in range(1, budget + 1)},
            )
        )
    seen: list[tuple[int, int]] = []  # (reported step, the seeds' own step)
    runner = TrialRunner(
        space, settings, on_progress=lambda t, step, rec: seen.append((step, rec["step"]))
    )
    study.optimize(runner, n_trials=1)
    trial = study.trials[-1]
    assert trial.state == optuna.trial.TrialState.PRUNED
    last_step, seed_step = seen[-1]
    assert last_step >= budget // 2
    assert last_step == max(trial.intermediate_values)  # the step the pruner judged
    if fused == "on":
        assert seed_step >= steps // 2  # every seed had trained half its steps
        assert all(step == k * s for step, s in seen)  # once per point, in seed-steps
        assert trial.user_attrs["stability"] is not None  # the point's mean record was kept
        # the value judged is the mean of the seeds' objectives at that point
        seeds = [
            json.loads(p.read_text())
            for p in sorted(
                (tmp_path / "runs" / f"trial-{trial.number}").glob("seed-*/metrics.json")
            )
        ]
        assert [m["steps_done"] for m in seeds] == [seed_step] * k
        mean = sum(m["objective"] for m in seeds) / k
        assert trial.intermediate_values[last_step] == pytest.approx(mean, rel=1e-9)


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
        ),
    ],
)
def test_a_diverging_seed_stops_alone_and_does_not_leak(monkeypatch, data, device):
    """A seed that diverges stops at its evaluation point, and the other seeds train on
    exactly as they would alone (NaN in one seed's stacked weights reaches no other seed;
    on CUDA through the grouped cuDNN kernels too)."""
    from ganarch import fused as fused_module

    if device == "cuda":
        _tf32_off(monkeypatch)

    class Poisoned(fused_module._Stack):
        def __init__(self, modules):
            super().__init__(modules)
            with torch.no_grad():
                for p in self.params.values():
                    p[1].fill_(float("nan"))  # seed 1 only

    monkeypatch.setattr(fused_module, "_Stack", Poisoned)
    spec = _spec()
    results = fit_seeds(
        spec,
        data,
        6,
        seeds=(0, 1),
        device=device,
        eval_every=3,
        n_eval=64,
        progress=False,
        options=FUSED,
    )
    assert results[1].diverged is True and results[1].failure == "nan"
    assert results[1].steps_done == 3 and len(results[1].history) == 1
    assert results[0].diverged is False and results[0].steps_done == 6
    alone = fit(spec, data, 6, seed=0, device=device, eval_every=3, n_eval=64, progress=False)
    if device == "cpu":
        _close_state(alone.generator, results[0].generator)
        assert results[0].history[-1]["loss_d"] == pytest.approx(
            alone.history[-1]["loss_d"], rel=1e-4
        )
    else:
        _near_state(alone.generator, results[0].generator)
        _same_history(alone.history, results[0].history)


# --- fallback to sequential seeds ------------------------------------------------------------


def test_spectral_norm_falls_back_to_sequential_with_the_reason(data):
    spec = _spec(d_wrap="spectral_norm")
    G, D = spec.build(init=False)
    assert "parametrization" in fusion_blocker(G, D)
    results = fit_seeds(
        spec,
        data,
        4,
        seeds=(0, 1),
        device="cpu",
        eval_every=4,
        n_eval=64,
        progress=False,
        options=FUSED,
    )
    for r, s in zip(results, (0, 1), strict=True):
        assert r.engine["seeds"] == "sequential" and "spectral norm" in r.engine["seeds_reason"]
        assert r.seed == s and r.steps_done == 4


class _Jitter(nn.Module):
    """A plugin block with a random op: vmap cannot give each seed its own stream."""

    def forward(self, x):
        return x + 0.01 * torch.randn_like(x)


class _Counter(nn.Module):
    """A plugin block with in-place state of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        self.calls += 1
        return x


@pytest.mark.parametrize(
    ("factory", "reason"), [(_Jitter, "fused forward/backward failed"), (_Counter, "buffers")]
)
def test_plugin_blocks_that_cannot_be_stacked_fall_back(plugin_state, data, factory, reason):
    class Plugin:
        @hookimpl
        def ganarch_register_blocks(self, registrar):
            registrar.add("odd", kind="activation", factory=lambda in_shape: factory())

    plugin_state(Plugin(), name="odd-block")
    spec = _spec(d_activation="odd")
    results = fit_seeds(
        spec,
        data,
        2,
        seeds=(0, 1),
        device="cpu",
        eval_every=2,
        n_eval=64,
        progress=False,
        options=FUSED,
    )
    assert all(r.engine["seeds"] == "sequential" for r in results)
    assert reason in results[0].engine["seeds_reason"]


def test_default_is_sequential_on_cpu_and_one_seed_is_never_fused(data):
    results = fit_seeds(
        _spec(),
        data,
        2,
        seeds=(0, 1),
        device="cpu",
        eval_every=2,
        n_eval=64,
        progress=False,
        options=StepOptions(),
    )
    assert results[0].engine["seeds"] == "sequential"
    assert "off by default on cpu" in results[0].engine["seeds_reason"]
    one = fit_seeds(
        _spec(), data, 2, seeds=(3,), device="cpu", n_eval=64, progress=False, options=FUSED
    )
    assert one[0].engine["seeds_reason"] == "one seed"


def test_bad_seed_lists_are_refused(data):
    for seeds in ((), (1, 1)):
        with pytest.raises(GanarchError, match="seed"):
            fit_seeds(_spec(), data, 2, seeds=seeds, device="cpu", progress=False)


# --- step options and the CUDA-graph decision ------------------------------------------------


def test_step_options_from_env_and_refusals():
    o = StepOptions.from_env(
        {"GANARCH_PRECISION": "BF16", "GANARCH_CUDA_GRAPH": "0", "GANARCH_FUSED_SEEDS": "off"}
    )
    assert (o.precision, o.cuda_graph, o.fused_seeds, o.channels_last) == (
        "bf16",
        False,
        "off",
        False,
    )
    assert StepOptions.from_env({}) == StepOptions()  # float32, graph on, fused auto
    with pytest.raises(GanarchError, match="precision"):
        StepOptions(precision="fp8")
    with pytest.raises(GanarchError, match="GANARCH_CUDA_GRAPH"):
        StepOptions.from_env({"GANARCH_CUDA_GRAPH": "maybe"})
    # bf16 never applies off CUDA: the CPU path stays float32 and reproducible
    assert StepOptions(precision="bf16").autocast(CPU)().__class__.__name__ == "nullcontext"


def test_graph_is_not_tried_off_cuda_or_when_turned_off():
    assert "CUDA device" in graph_blocker(CPU, StepOptions())
    calls = []
    stepper = Stepper(lambda: calls.append(1), CPU, StepOptions())
    for _ in range(5):
        stepper()
    assert calls == [1] * 5 and stepper.mode == "eager"
    assert stepper.record() == {"step": "eager", "reason": graph_blocker(CPU, StepOptions())}


def test_after_a_failed_capture_no_run_of_the_process_plans_a_graph(monkeypatch, data):
    """Once a capture failed, graph_blocker says so for every later CUDA run: make_step and
    make_fused_step then build a plain fused Adam, not a capturable one (slower uncaptured,
    by torch.optim.Adam's documentation) for a step that will never be captured."""
    gpu = torch.device("cuda")  # only its type is read: no GPU needed
    monkeypatch.setattr("ganarch.stepper._FAILED_CAPTURE", None)
    assert graph_blocker(gpu, StepOptions()) is None
    monkeypatch.setattr("ganarch.stepper._FAILED_CAPTURE", "RuntimeError: not permitted")
    assert graph_blocker(gpu, StepOptions()) == (
        "an earlier capture failed in this process (RuntimeError: not permitted)"
    )
    assert "CUDA device" in graph_blocker(CPU, StepOptions())  # the first reason still wins

    # What the step builders make of it, on the CPU: their graph_blocker judges the run as
    # if on CUDA (the rest of it real), and each Adam's ``graph`` (capturable) is recorded.
    real_adam, planned = make_adam, []

    def recording_adam(params, lr, tr, device, graph):
        planned.append(graph)
        return real_adam(params, lr, tr, device, graph)

    for module in ("ganarch.training", "ganarch.fused"):
        monkeypatch.setattr(f"{module}.make_adam", recording_adam)
        monkeypatch.setattr(f"{module}.graph_blocker", lambda d, o: graph_blocker(gpu, o))
    spec = _spec()

    def adams_capturable() -> list[bool]:
        planned.clear()
        torch.manual_seed(0)
        G, D = spec.build(init=True)
        make_step(spec, G, D, data.images, 0, CPU, StepOptions())
        make_fused_step(spec, data.images, [0, 1], CPU, StepOptions())
        return list(planned)

    monkeypatch.setattr("ganarch.stepper._FAILED_CAPTURE", None)
    assert adams_capturable() == [True] * 4  # G's and D's, one seed and fused
    monkeypatch.setattr("ganarch.stepper._FAILED_CAPTURE", "RuntimeError: not permitted")
    assert adams_capturable() == [False] * 4


def test_failed_capture_falls_back_to_eager_with_the_reason(monkeypatch):
    """The decision logic of the CUDA path, without a GPU: warm-up steps run eagerly, a
    capture that raises is recorded (its first exception: capture_end fails after a step
    that failed), every step still runs (eagerly) exactly once, and no later Stepper of the
    process tries to capture again."""
    monkeypatch.setattr("ganarch.stepper._FAILED_CAPTURE", None)
    monkeypatch.setattr("ganarch.stepper.graph_blocker", lambda device, options: None)
    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: _NoStream())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: _NoStream())
    monkeypatch.setattr(torch.cuda, "stream", lambda s: _NoContext())
    monkeypatch.setattr(torch.cuda, "device", lambda d: _NoContext())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    calls = []

    def capture(step, generators):
        try:
            raise RuntimeError("operation not permitted when stream is capturing\nmore")
        finally:  # what capture_end says after the step failed inside capture
            raise RuntimeError("operation failed due to a previous error during capture")

    stepper = Stepper(lambda: calls.append(1), CPU, StepOptions(warmup_steps=2), capture=capture)
    assert stepper.mode == "graph"
    stepper()
    assert stepper.record() == {  # a run this short never reaches the graph: say so
        "step": "eager",
        "reason": "the run ended before capture (1 warm-up steps)",
    }
    for _ in range(5):
        stepper()
    assert len(calls) == 6  # 2 warm-up + the step whose capture failed + 3 eager
    assert stepper.mode == "eager"
    assert stepper.reason == (
        "capture failed: RuntimeError: operation not permitted when stream is capturing"
    )
    later = Stepper(lambda: calls.append(1), CPU, StepOptions(), capture=lambda s, g: 1 / 0)
    assert later.mode == "eager" and later.reason == (
        "an earlier capture failed in this process "
        "(RuntimeError: operation not permitted when stream is capturing)"
    )
    monkeypatch.setattr("ganarch.stepper._FAILED_CAPTURE", None)

    replays = []

    class Graph:
        def replay(self):
            replays.append(1)

    calls.clear()
    ok = Stepper(
        lambda: calls.append(1), CPU, StepOptions(warmup_steps=1), capture=lambda s, g: Graph()
    )
    for _ in range(4):
        ok()
    assert (
        len(calls) == 1 and len(replays) == 3 and ok.record() == {"step": "graph", "reason": None}
    )


def test_a_stepper_built_before_a_failed_capture_does_not_try_its_own(monkeypatch):
    """The bench builds every loop before timing any: when the first loop's capture fails,
    a loop built earlier (still warming up) runs eagerly too, with the reason, and its
    capture is never tried (a failed capture may leave torch's capture state unsafe)."""
    monkeypatch.setattr("ganarch.stepper._FAILED_CAPTURE", None)
    monkeypatch.setattr("ganarch.stepper.graph_blocker", lambda device, options: None)
    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: _NoStream())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: _NoStream())
    monkeypatch.setattr(torch.cuda, "stream", lambda s: _NoContext())
    monkeypatch.setattr(torch.cuda, "device", lambda d: _NoContext())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    tried, calls = [], []

    def failing(step, generators):
        tried.append("first")
        raise RuntimeError("operation not permitted when stream is capturing")

    def second_capture(step, generators):
        tried.append("second")
        return _ReplayingGraph(step, generators)

    options = StepOptions(warmup_steps=1)
    first = Stepper(lambda: calls.append(1), CPU, options, capture=failing)
    second = Stepper(lambda: calls.append(2), CPU, options, capture=second_capture)
    assert first.mode == second.mode == "graph"  # both built before any capture
    for _ in range(3):
        first()
    for _ in range(3):
        second()
    assert tried == ["first"]
    assert calls == [1, 1, 1, 2, 2, 2]  # every step still ran once, eagerly
    assert second.record() == {
        "step": "eager",
        "reason": "an earlier capture failed in this process "
        "(RuntimeError: operation not permitted when stream is capturing)",
    }


class _ReplayingGraph:
    """Stands in for a CUDA graph on the CPU: capture records the step without running it
    (as CUDA does), replay runs it."""

    def __init__(self, step, generators):
        self.step = step

    def replay(self):
        self.step()


def test_a_step_that_makes_the_host_wait_is_never_captured(monkeypatch):
    """A host sync seen in warm-up (CUDA's sync debug mode warns) means the step cannot be
    captured: no capture is tried, the run goes on eagerly, every step runs once, the reason
    is recorded, and the sync debug mode is restored. The first warm-up step (cuDNN
    autotuning) is not checked."""
    import warnings

    monkeypatch.setattr("ganarch.stepper._FAILED_CAPTURE", None)
    monkeypatch.setattr("ganarch.stepper.graph_blocker", lambda device, options: None)
    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: _NoStream())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: _NoStream())
    monkeypatch.setattr(torch.cuda, "stream", lambda s: _NoContext())
    monkeypatch.setattr(torch.cuda, "device", lambda d: _NoContext())
    modes = ["default"]
    monkeypatch.setattr(torch.cuda, "get_sync_debug_mode", lambda: modes[-1])
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", lambda m: modes.append(m))
    calls = []

    def step():
        calls.append(1)
        if modes[-1] == "warn":  # what torch does on .item() in this mode
            warnings.warn("called a synchronizing CUDA operation", UserWarning, stacklevel=1)

    def capture(step, generators):
        raise AssertionError("capture must not be tried")

    stepper = Stepper(step, torch.device("cuda"), StepOptions(warmup_steps=3), capture=capture)
    for _ in range(6):
        stepper()
    assert len(calls) == 6 and modes == ["default", "warn", "default"]
    assert stepper.record() == {
        "step": "eager",
        "reason": "the step makes the host wait, so it cannot be captured: "
        "called a synchronizing CUDA operation",
    }


def _pretend_cuda_graphs(monkeypatch):
    monkeypatch.setattr("ganarch.stepper._FAILED_CAPTURE", None)
    monkeypatch.setattr("ganarch.stepper.graph_blocker", lambda device, options: None)
    monkeypatch.setattr("ganarch.stepper._capture_cuda_graph", _ReplayingGraph)
    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: _NoStream())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: _NoStream())
    monkeypatch.setattr(torch.cuda, "stream", lambda s: _NoContext())
    monkeypatch.setattr(torch.cuda, "device", lambda d: _NoContext())


@pytest.mark.parametrize("fused", [False, True], ids=["one-seed", "fused"])
def test_the_graph_path_trains_every_step_once(monkeypatch, data, fused):
    """The loop through warm-up, capture (which runs nothing) and replays trains exactly the
    steps eager training does: with a stand-in graph on the CPU the result is bit for bit
    the eager one (one step lost or doubled around the capture would change it)."""
    spec = _spec()
    kw = dict(device="cpu", eval_every=4, n_eval=64, progress=False)

    def run():
        if fused:
            return fit_seeds(spec, data, 9, seeds=(0, 1), options=FUSED, **kw)[1]
        return fit(spec, data, 9, seed=1, options=StepOptions(warmup_steps=2), **kw)

    eager = run()
    _pretend_cuda_graphs(monkeypatch)
    graphed = run()
    assert graphed.engine["step"] == "graph" and eager.engine["step"] == "eager"
    assert graphed.history == eager.history
    for a, b in zip(
        graphed.generator.state_dict().values(),
        eager.generator.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(a, b)


def test_the_step_bench_says_how_each_loop_ran_and_keeps_figures_past_a_failed_loop(
    monkeypatch, tmp_path, capsys
):
    """bench/bench_train.py (what a GPU run publishes): each ganarch loop records whether its
    step ran as a graph or eagerly and why (one failed capture makes every later one of the
    process eager, so a figure must say what it ran), and a fused loop that cannot be built
    is left out with its error while the net's other figures are still written."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "bench_train.py"
    spec = importlib.util.spec_from_file_location("bench_train_under_test", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    real = bench.make_fused_step

    def fused_or_fail(spec, images, seeds, device, options):
        if len(seeds) == 2:
            raise RuntimeError("no batching rule for cudnn_batch_norm")
        return real(spec, images, seeds, device, options)

    monkeypatch.setattr(bench, "make_fused_step", fused_or_fail)
    out = tmp_path / "bench.json"
    argv = ["bench_train.py", "--device", "cpu", "--nets", "dcgan", "--ks", "1,2"]
    argv += ["--steps", "1", "--repeats", "1", "--warmup", "1", "--matmul", "64"]
    monkeypatch.setattr(sys, "argv", [*argv, "--json", str(out)])
    bench.main()
    capsys.readouterr()
    result = json.loads(out.read_text())
    assert result["complete"] is True
    net = result["nets"][0]
    assert net["failed"] == {"fused_k2": "RuntimeError: no batching rule for cudnn_batch_norm"}
    assert sorted(net["loops"]) == ["fused_k1", "ganarch", "textbook"]
    for key in ("ganarch", "fused_k1"):
        assert net["loops"][key]["engine"]["step"] == "eager"
        assert "CUDA device" in net["loops"][key]["engine"]["reason"]
    assert "engine" not in net["loops"]["textbook"]  # the plain loop has no Stepper

    # a baseline that cannot be built stops the run: every ratio is taken against it
    def no_step(*args):
        raise RuntimeError("no step")

    monkeypatch.setattr(bench, "make_step", no_step)
    with pytest.raises(RuntimeError, match="no step"):
        bench.main()


class _NoStream:
    def wait_stream(self, other):
        pass


class _NoContext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# --- CUDA (skipped without a GPU) --------------------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
def test_cuda_graph_step_trains_like_eager(monkeypatch, data):
    """The captured step replays the eager step's arithmetic and random draws on CUDA: same
    seed, full float32, the same per-point losses within 1e-3 and the same final weights (a
    replay that reused a batch or its noise, or skipped a step, would differ far more)."""
    _tf32_off(monkeypatch)
    spec = _spec()
    kw = dict(device="cuda", eval_every=4, n_eval=64, progress=False)
    graph = fit(spec, data, 12, seed=0, options=StepOptions(), **kw)
    eager = fit(spec, data, 12, seed=0, options=StepOptions(cuda_graph=False), **kw)
    assert graph.engine["step"] == "graph", graph.engine
    assert eager.engine["step"] == "eager"
    _same_history(graph.history, eager.history)
    _near_state(graph.generator, eager.generator)
    _near_state(graph.discriminator, eager.discriminator)


@cuda
def test_cuda_graph_replays_draw_new_numbers_in_eager_order():
    """A registered generator advances on every replay: the captured draws are the draws a
    fresh generator with the same seed makes eagerly, call for call, never repeated."""
    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(5)
    out = torch.zeros(64, dtype=torch.long, device=dev)

    def step():
        out.copy_(torch.randint(1 << 30, (64,), device=dev, generator=gen))

    stepper = Stepper(step, dev, StepOptions(warmup_steps=2), generators=[gen])
    seen = []
    for _ in range(6):  # 2 warm-up, capture + its replay, 3 replays
        stepper()
        seen.append(out.clone())
    assert stepper.record() == {"step": "graph", "reason": None}
    ref = torch.Generator(device=dev).manual_seed(5)
    for got in seen:
        assert torch.equal(got, torch.randint(1 << 30, (64,), device=dev, generator=ref))
    assert all(not torch.equal(seen[i], seen[i + 1]) for i in range(len(seen) - 1))


@cuda
def test_cuda_fused_seeds_equal_separate_cuda_runs(monkeypatch, data):
    """On CUDA (vmap over grouped cuDNN convolutions, BatchNorm with K times the channels,
    one generator per seed) each fused seed ends where ``fit`` on CUDA with that seed ends:
    both draw the same batches and noise from a CUDA generator with that seed."""
    _tf32_off(monkeypatch)
    spec = _spec()
    kw = dict(device="cuda", eval_every=4, n_eval=64, progress=False)
    fused = fit_seeds(spec, data, 8, seeds=(0, 1, 2), options=FUSED, **kw)
    assert fused[0].engine["seeds"] == "fused", fused[0].engine
    for seed, f in zip((0, 1, 2), fused, strict=True):
        alone = fit(spec, data, 8, seed=seed, **kw)
        _same_history(alone.history, f.history)
        _near_state(alone.generator, f.generator)
        _near_state(alone.discriminator, f.discriminator)


@cuda
def test_cuda_bf16_runs_and_is_recorded(data):
    r = fit(
        _spec(),
        data,
        8,
        seed=0,
        device="cuda",
        n_eval=64,
        progress=False,
        options=StepOptions(precision="bf16", channels_last=True),
    )
    assert r.engine["precision"] == "bf16" and not r.diverged


class _HostSync(nn.Module):
    """A plugin block that reads a device value on the host (cannot be captured)."""

    def forward(self, x):
        if x.abs().max().item() > 1e9:  # a host sync: illegal while a stream is capturing
            return x * 0
        return x


@cuda
def test_cuda_uncapturable_block_falls_back_to_eager_and_trains(plugin_state, data):
    class Plugin:
        @hookimpl
        def ganarch_register_blocks(self, registrar):
            registrar.add("syncs", kind="activation", factory=lambda in_shape: _HostSync())

    plugin_state(Plugin(), name="host-sync")
    spec = _spec(d_activation="syncs")
    r = fit(spec, data, 12, seed=0, device="cuda", eval_every=6, n_eval=64, progress=False)
    assert r.engine["step"] == "eager" and "makes the host wait" in r.engine["reason"], r.engine
    assert r.steps_done == 12 and not r.diverged


class _DeviceSync(nn.Module):
    """A block that waits for the whole device: not a sync the debug mode reports, and
    illegal while a stream is capturing, so capture itself fails."""

    def forward(self, x):
        torch.cuda.synchronize()
        return x


@cuda
def test_cuda_failed_capture_falls_back_safely_and_is_not_retried(monkeypatch, plugin_state, data):
    """A capture that fails inside the step: the run trains on eagerly to its end, the
    current stream is the default one again, the reason is the first error, and the next
    run of the process does not try to capture."""
    monkeypatch.setattr("ganarch.stepper._FAILED_CAPTURE", None)  # restored afterwards

    class Plugin:
        @hookimpl
        def ganarch_register_blocks(self, registrar):
            registrar.add("waits", kind="activation", factory=lambda in_shape: _DeviceSync())

    plugin_state(Plugin(), name="device-sync")
    kw = dict(seed=0, device="cuda", eval_every=6, n_eval=64, progress=False)
    r = fit(_spec(d_activation="waits"), data, 12, **kw)
    assert r.engine["step"] == "eager" and r.engine["reason"].startswith("capture failed")
    assert "previous error" not in r.engine["reason"], r.engine  # the cause, not the echo
    assert r.steps_done == 12 and not r.diverged
    assert torch.cuda.current_stream() == torch.cuda.default_stream()
    again = fit(_spec(), data, 6, **kw)
    assert again.engine["step"] == "eager" and "earlier capture failed" in again.engine["reason"]
    assert again.steps_done == 6 and not again.diverged
