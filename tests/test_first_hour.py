"""What a new user and a new plugin author meet in their first hour (issue 12): plugin name
clashes and failures that say what to do, counts that add up, tables that fit 80 columns
with names whole, plain block descriptions, param values checked against annotations, the
report's importance section and effect plot, and searching from Python."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Literal

import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial
from rich.console import Console
from torch import nn
from typer.testing import CliRunner

import ganarch
from ganarch import GANSpec, SpecError
from ganarch.builder import plan
from ganarch.cli import app
from ganarch.errors import GanarchError
from ganarch.registry import BLOCK_KINDS
from ganarch.search.counts import TrialCounts
from ganarch.search.storage import open_storage
from ganarch.search.study import SearchSummary, summary_lines

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _cli(*args, code: int = 0):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result


# -- 1. plugin names: the built-ins documented, clashes and failures explained -----------------


def _relu(in_shape):
    return nn.ReLU()


class _Blocks:
    """A code plugin that registers the given names as activations."""

    def __init__(self, *names: str) -> None:
        self.names = names

    @ganarch.hookimpl
    def ganarch_register_blocks(self, registrar) -> None:
        for name in self.names:
            registrar.add(name, kind="activation", factory=_relu)


def _doc_blocks() -> dict[str, list[str]]:
    text = (ROOT / "docs" / "plugins.md").read_text()
    section = text.split("<!-- built-in blocks: start -->")[1].split("<!-- built-in blocks: end")[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = re.findall(r"`([^`]+)`", cells[1])
    return rows


def test_the_plugin_guide_lists_exactly_the_builtin_blocks() -> None:
    shown = json.loads(_cli("blocks", "--json").stdout)
    expected = {
        k: sorted(r["name"] for r in shown if r["kind"] == k and r["plugin"] == "builtin")
        for k in BLOCK_KINDS
    }
    table = "\n".join(
        f"| `{k}` | " + ", ".join(f"`{n}`" for n in names) + " |" for k, names in expected.items()
    )
    assert _doc_blocks() == expected, f"update docs/plugins.md's built-in blocks to:\n{table}"
    guide = (ROOT / "docs" / "plugins.md").read_text()
    assert "run `ganarch blocks`" in guide and "prefix" in guide


def test_a_duplicate_names_both_plugins_every_clash_and_the_way_out(plugin_state) -> None:
    plugin_state(_Blocks("mish_d", "silu", "groupnorm_x", "relu"), name="my-plugin")
    with pytest.warns(UserWarning, match="registered twice"):
        found = ganarch.blocks()
    error = next(i.error for i in ganarch.plugin.manager.plugins() if i.name == "my-plugin")
    assert "block 'silu' is registered twice: by plugin 'builtin' and plugin 'my-plugin'" in error
    assert "block 'relu' is registered twice: by plugin 'builtin' and plugin 'my-plugin'" in error
    assert "'my_plugin_silu'" in error and "`ganarch blocks`" in error and "uninstall" in error
    assert "mish_d" not in found and found["silu"].plugin == "builtin"


def test_an_unknown_block_of_a_failed_plugin_names_the_plugin_and_its_error(plugin_state) -> None:
    plugin_state(_Blocks("silu", "mish_d"), name="mine")  # the clash comes first
    with pytest.warns(UserWarning):
        ganarch.blocks()
    with pytest.raises(SpecError) as info:
        ganarch.dcgan_spec(16, width=8, d_activation="mish_d")
    message = str(info.value)
    assert message.startswith("d_activation: 'mish_d' is not available: plugin 'mine'")
    assert "failed to load" in message and "registered twice" in message
    assert "`ganarch plugins`" in message


def test_an_unknown_block_says_when_a_plugin_failed_or_plugins_are_off(
    plugin_state, monkeypatch
) -> None:
    class Broken:
        @ganarch.hookimpl
        def ganarch_register_blocks(self, registrar):
            raise ImportError("needs a library that is not installed")

    plugin_state(Broken(), name="broken")
    with pytest.warns(UserWarning), pytest.raises(SpecError) as info:
        ganarch.dcgan_spec(16, width=8, g_activation="mish")
    assert "plugin 'broken' failed to load (see `ganarch plugins`)" in str(info.value)

    ganarch.plugin.manager.reset()
    monkeypatch.setenv(ganarch.plugin.manager.DISABLE_ENV, "1")
    with pytest.raises(SpecError) as info:
        ganarch.dcgan_spec(16, width=8, g_activation="mish")
    assert "third-party plugins are off (GANARCH_DISABLE_PLUGINS=1)" in str(info.value)
    result = _cli("validate", "dcgan:16", code=0)  # the built-ins still work
    assert result.stdout.startswith("ok:")


def test_plugins_command_exits_1_and_says_which_plugin_failed(plugin_state) -> None:
    plugin_state(_Blocks("silu"), name="clash")
    with pytest.warns(UserWarning):
        result = _cli("plugins", code=1)
    assert "error: 1 plugin failed to load ('clash')" in result.stderr
    assert "registered twice" in result.stdout
    plugin_state(_Blocks("fine_act"), name="fine")  # reset by the fixture: all plugins load
    ganarch.plugin.manager.reset()
    assert _cli("plugins").exit_code == 0


# -- 5. block descriptions are plain text ------------------------------------------------------


def test_block_descriptions_have_no_restructuredtext(plugin_state) -> None:
    def fancy(in_shape, slope: float = 0.1):
        """A :class:`torch.nn.LeakyReLU` whose ``slope`` is *learned*, written
        over two lines [not markup].

        More detail that is not the description.
        """
        return nn.LeakyReLU(slope)

    class Plugin:
        @ganarch.hookimpl
        def ganarch_register_blocks(self, registrar):
            registrar.add("fancy_act", kind="activation", factory=fancy)

    plugin_state(Plugin(), name="fancy")
    rows = {r["name"]: r for r in json.loads(_cli("blocks", "--json").stdout)}
    assert not any("``" in r["description"] or ":class:" in r["description"] for r in rows.values())
    assert rows["groupnorm"]["description"].endswith("not above groups.")
    assert rows["fancy_act"]["description"] == (
        "A torch.nn.LeakyReLU whose slope is learned, written over two lines [not markup]."
    )
    table = _cli("blocks", "--kind", "activation").stdout
    assert "[not markup]" in " ".join(table.split())  # rich did not eat it as a style tag


# -- 6. param values are checked against the factory's annotations -----------------------------

_CALLS: list[dict] = []


def typed_act(
    in_shape: ganarch.Shape,
    groups: int = 2,
    mode: Literal["a", "b"] = "a",
    slope: float | None = None,
    flag: bool = False,
) -> nn.Module:
    """An activation with typed params (string annotations: this module defers them)."""
    _CALLS.append({"groups": groups})
    return nn.ReLU()


class _Typed:
    @ganarch.hookimpl
    def ganarch_register_blocks(self, registrar):
        registrar.add("typed_act", kind="activation", factory=typed_act)


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"groups": "x"}, "groups: expected int, got 'x'"),
        ({"groups": True}, "groups: expected int, got True"),
        ({"groups": 2.5}, "groups: expected int, got 2.5"),
        ({"mode": "c"}, "mode: expected one of 'a', 'b', got 'c'"),
        ({"slope": "steep"}, "slope: expected float or None, got 'steep'"),
        ({"flag": 1}, "flag: expected bool, got 1"),
        ({"groups": 3, "mode": "b", "slope": 1, "flag": True}, None),  # an int is a fine float
        ({"slope": None}, None),
    ],
)
def test_param_values_are_checked_before_the_block_is_called(plugin_state, params, problem):
    plugin_state(_Typed(), name="typed")
    _CALLS.clear()
    if problem is None:
        plan(ganarch.dcgan_spec(16, width=8, g_activation="typed_act", g_activation_params=params))
        assert _CALLS
        return
    with pytest.raises(SpecError) as info:
        ganarch.dcgan_spec(16, width=8, g_activation="typed_act", g_activation_params=params)
    assert re.fullmatch(rf"generator\.layers\[2\]\.params\.{re.escape(problem)}", str(info.value))
    assert _CALLS == []  # refused before the plugin's own code ran


class _LeakyFromAClass(nn.LeakyReLU):
    """A class as a factory: its __init__'s annotations count, not its attributes'."""

    def __init__(self, in_shape: ganarch.Shape, slope: float = 0.2, training: int = 0) -> None:
        super().__init__(slope)


def test_class_factories_are_checked_and_blocks_json_shows_checked_types(plugin_state) -> None:
    class Plugin:
        @ganarch.hookimpl
        def ganarch_register_blocks(self, registrar):
            registrar.add("leaky_cls", kind="activation", factory=_LeakyFromAClass)

    plugin_state(Plugin(), name="cls")
    assert plan(ganarch.dcgan_spec(16, width=8, d_activation="leaky_cls"))
    with pytest.raises(SpecError, match=r"params\.training: expected int, got True"):
        ganarch.dcgan_spec(
            16, width=8, d_activation="leaky_cls", d_activation_params={"training": True}
        )
    rows = {r["name"]: r for r in json.loads(_cli("blocks", "--json").stdout)}
    assert rows["leaky_cls"]["params"]["slope"] == {
        "required": False,
        "default": 0.2,
        "type": "float",
    }
    assert rows["groupnorm"]["params"]["groups"]["type"] == "int"


def test_a_builtin_block_param_of_the_wrong_type_is_located(tmp_path) -> None:
    d = ganarch.dcgan_spec(16, width=8, g_norm="groupnorm").to_dict()
    layers = d["generator"]["layers"]
    index = next(i for i, layer in enumerate(layers) if layer.get("block") == "groupnorm")
    layers[index]["params"] = {"groups": "x"}
    expected = f"generator.layers[{index}].params.groups: expected int, got 'x'"
    with pytest.raises(SpecError) as info:
        plan(GANSpec.from_dict(d))
    assert str(info.value) == expected
    (tmp_path / "bad.json").write_text(json.dumps(d))
    result = _cli("validate", tmp_path / "bad.json", code=2)
    assert result.stderr.strip() == f"error: {expected}"


# -- 2 and 3. counts that add up; tables that fit 80 columns -----------------------------------

_DISTS = {
    "g_upsample": CategoricalDistribution(["tconv", "nearest_conv"]),
    "d_downsample": CategoricalDistribution(["strided_conv", "conv_avgpool"]),
    "d_activation": CategoricalDistribution(["leaky_relu", "relu"]),
    "g_dense_layers": CategoricalDistribution([0, 1]),
    "beta1": CategoricalDistribution([0.5, 0.9]),
    "d_activation_params.slope|leaky_relu": CategoricalDistribution([0.1, 0.2]),
}
_PARAMS = {
    "g_upsample": "nearest_conv",
    "d_downsample": "conv_avgpool",
    "d_activation": "leaky_relu",
    "g_dense_layers": 0,
    "beta1": 0.5,
    "d_activation_params.slope|leaky_relu": 0.2,  # a branch label: tables leave it out
}
_SHOWN = {name.split("|")[0]: value for name, value in _PARAMS.items()}
STUDY = "quick-digits-with-a-longer-name"


@pytest.fixture
def study_storage(tmp_path) -> str:
    """A study of five trials, one of each kind (no training: recorded outcomes)."""
    path = str(tmp_path / "s.journal")
    st = optuna.create_study(storage=open_storage(path), study_name=STUDY, direction="maximize")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        st.set_metric_names(["objective"])
    st.set_user_attr("ganarch", {"space": "quick", "data": "digits"})

    def add(state, value=None, params=_PARAMS, **attrs):
        scores = {"quality": value, "stability": 0.9 if value is not None else None}
        st.add_trial(
            create_trial(
                state=state,
                value=value if state == TrialState.COMPLETE else None,
                params=params,
                distributions=_DISTS,
                user_attrs={**scores, "objective": value, **attrs},
                intermediate_values={50: value} if state == TrialState.PRUNED else None,
            )
        )

    add(TrialState.COMPLETE, 0.1913)
    add(TrialState.PRUNED, 0.0021, {**_PARAMS, "g_upsample": "tconv"})
    add(TrialState.COMPLETE, 0.0, {**_PARAMS, "beta1": 0.9}, failure="error: ValueError: boom")
    add(TrialState.COMPLETE, 0.1913, duplicate_of=0)
    add(TrialState.FAIL, None, {**_PARAMS, "d_activation": "relu"}, failure="interrupted")
    return path


def test_trial_counts_add_up_and_say_what_each_is(study_storage) -> None:
    trials = ganarch.load_study(STUDY, study_storage).get_trials()
    c = TrialCounts.of(trials)
    assert (c.complete, c.failed, c.pruned, c.repeats, c.interrupted) == (1, 1, 1, 1, 1)
    assert c.trained == 3 and c.total == len(trials) == 5

    summary = SearchSummary(STUDY, "s.journal", target=3, elapsed_s=93.0)
    summary.trial_counts = c.to_dict()
    summary.run_counts = c.to_dict()
    first, run = summary_lines(summary)[:2]
    assert "3/3 trials trained (1 complete + 1 failed + 1 pruned)" in first
    assert "not counted toward --trials 3: 1 repeat (a configuration proposed again" in first
    assert "1 interrupted (run again on resume)" in first and first.endswith("5 trials in all")
    assert run == "this run: 5 trials in 93s (3 trained, 1 repeat, 1 interrupted)"


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


def test_trials_table_fits_80_columns_with_names_whole(study_storage, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    out = _cli("trials", STUDY, "--storage", study_storage).stdout
    lines = _lines(out)
    assert max(len(line) for line in lines) <= 80, out
    for name, value in _SHOWN.items():  # each choice on one line, never split mid-word
        assert f"{name}={value}" in out
    assert "|leaky_relu" not in out
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^(\d) │ (\w+)\s", out, re.M)}
    assert rows == {"0": "complete", "1": "pruned", "2": "failed", "3": "repeat", "4": "stopped"}
    words = " ".join(re.sub(r"[│┃]", " ", out).split())  # the cells' words, in order
    assert "repeat 0.191 0.191 0.9 repeats trial 0: same" in words
    assert "failed: error: ValueError: boom" in words

    rows = json.loads(_cli("trials", STUDY, "--storage", study_storage, "--json").stdout)
    assert [r["repeat_of"] for r in rows] == [None, None, None, 0, None]
    assert [r["label"] for r in rows] == ["complete", "pruned", "failed", "repeat", "stopped"]


def test_a_table_that_must_fold_keeps_its_right_edge_at_80_columns(monkeypatch, capsys) -> None:
    """The rules table's shape: rich, left to itself, narrowed the claim column below what
    its words needed and cropped the verdict column and the right border at 80 columns."""
    from rich.table import Table
    from rich.text import Text

    from ganarch.cli._common import print_table

    monkeypatch.setenv("COLUMNS", "80")
    t = Table(title="Rules")
    t.add_column("#", justify="right")
    t.add_column("claim", min_width=10)
    for header in ("n p/a", "effect", "95% CI", "flips"):
        t.add_column(header, justify="right", no_wrap=True)
    t.add_column("verdict", min_width=10)
    for i, (claim, verdict) in enumerate(
        [
            ("no dense hidden layers", "confirmed"),
            ("no norm on G output / D input", "inconclusive"),
            ("LeakyReLU in D", "contradicted"),
        ]
    ):
        t.add_row(str(i), claim, "16/16", "-0.051", "[-0.102, -0.00072]", "1/2", Text(verdict))
    print_table(t)
    lines = _lines(capsys.readouterr().out)
    assert max(len(line) for line in lines) <= 80
    body = [line for line in lines if line.startswith(("┃", "│", "┏", "┗", "└", "┡"))]
    assert body and all(line[-1] in "┃│┓┩┘┛" for line in body), "\n".join(lines)
    assert all(
        v in "\n".join(lines) for v in ("inconclusive", "contradicted", "[-0.102, -0.00072]")
    )


def test_too_narrow_a_terminal_gets_one_record_per_row_not_cropped_columns(
    study_storage, monkeypatch
) -> None:
    monkeypatch.setenv("COLUMNS", "50")
    out = _cli("trials", STUDY, "--storage", study_storage).stdout
    assert max(len(line) for line in _lines(out)) <= 50, out
    assert "┃" not in out and "    state: repeat" in out
    for name, value in _SHOWN.items():
        assert f"{name}={value}" in out
    assert _lines(out).count("        #: 4") == 1  # every row is there


@pytest.mark.parametrize("columns", ["5", "10"])
def test_a_terminal_narrower_than_any_word_still_gets_every_name_whole(
    study_storage, monkeypatch, columns
) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    out = _cli("trials", STUDY, "--storage", study_storage).stdout
    assert "…" not in out and "stability: " in out
    for name, value in _SHOWN.items():
        assert f"{name}={value}" in out


def test_piped_tables_keep_one_line_per_row(study_storage, monkeypatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    out = _cli("trials", STUDY, "--storage", study_storage).stdout
    row = next(line for line in _lines(out) if re.match(r"0 │", line))
    assert all(f"{k}={v}" in row for k, v in _SHOWN.items())  # not folded into 80 columns


def test_studies_table_fits_80_columns_and_its_counts_add_up(study_storage, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    out = _cli("studies", "--storage", study_storage).stdout
    assert out.startswith("1 study in ")
    assert max(len(line) for line in _lines(out)) <= 80, out
    assert STUDY in out  # whole, not "quick-di…"
    cells = [line.split("│")[2].strip() for line in _lines(out) if line.startswith("│")]
    assert cells == [
        "5 in all:",
        "1 complete",
        "1 failed",
        "1 pruned",
        "1 repeat",
        "1 interrupted",
    ]
    (row,) = json.loads(_cli("studies", "--storage", study_storage, "--json").stdout)
    assert row["counts"]["total"] == 5 and row["counts"]["trained"] == 3


def test_blocks_table_fits_80_columns_with_names_and_params_whole(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    out = _cli("blocks").stdout
    assert max(len(line) for line in _lines(out)) <= 80, out
    for name in ganarch.blocks():
        assert re.search(rf"│ {name}\s", out), name
    assert "n_power_iterations=1" in out and "kind: upsample" in out


def test_inspect_fits_80_columns_with_wraps_under_their_block(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    spec = ganarch.dcgan_spec(64, channels=3, d_wrap="spectral_norm", g_wrap="spectral_norm")
    out = _cli("inspect", spec.save(tmp_path / "sn.json")).stdout
    table = [line for line in _lines(out) if line[:1] in "┏┃┡│└"]  # the first line names a path
    assert table and max(len(line) for line in table) <= 80, out
    assert "┃" in out and "+ spectral_norm" in out and "out_channels=512" in out


# -- 4. the live display -----------------------------------------------------------------------


def test_the_live_display_clears_itself_and_log_lines_do_not_wrap(study_storage) -> None:
    from ganarch.search.display import SearchDisplay

    study = ganarch.load_study(STUDY, study_storage)
    config = SimpleNamespace(
        trials=3,
        study_name="x" * 90,
        workers=1,
        worker_count=1,
        sampler="tpe",
        pruner="none",
        space=SimpleNamespace(name="quick"),
        settings=SimpleNamespace(steps=10, seeds=1, data="digits", objective="score"),
    )
    buffer = io.StringIO()
    live = SearchDisplay(Console(file=buffer, force_terminal=True, width=80), live=True)
    live.begin(config, study)
    live.poll(study, force=True)
    live.end(study)
    # on stop, the panel is erased (cursor up + erase line): only the final table remains
    assert buffer.getvalue().endswith("\x1b[2K")

    buffer = io.StringIO()
    log = SearchDisplay(Console(file=buffer, width=80), live=False)
    log.begin(config, study)
    assert buffer.getvalue().splitlines()[0].startswith("study " + "x" * 90 + " · space")


# -- 7. the report -----------------------------------------------------------------------------


def test_report_importance_note_once_and_no_interval_without_a_verdict(study_storage) -> None:
    from ganarch.analysis.report import effect_figure, render_html
    from ganarch.analysis.rules import rules_table

    study = ganarch.load_study(STUDY, study_storage)
    table = rules_table(study)
    assert all(r.verdict == "not enough trials" for r in table.rows)
    fig = effect_figure(table)
    (ax,) = fig.axes
    assert not ax.containers  # no error bars at all
    assert any("not enough trials" in t.get_text() for t in ax.texts)

    page = render_html(study, table)
    assert page.count("too few complete trials") == 2  # under the table and in its section
    rules = page.split("<h2>Rules table")[1].split("</table>")[0]
    assert "no interval: too few trials" in rules
    assert not re.search(r"\[-?[0-9.]+, -?[0-9.]+\]", rules)  # no interval printed
    assert "scores by choice" in page and "needs at least 10 distinct complete trials" in page


# -- 8. the test extra is named where the contract test is shown -------------------------------


def test_the_guide_says_how_to_install_pytest_for_the_contract_test() -> None:
    guide = (ROOT / "docs" / "plugins.md").read_text()
    testing = guide.split("## Testing a block")[1].split("\n## ")[0]
    assert 'pip install "ganarch[test]"' in testing
    assert testing.index("ganarch[test]") < testing.index("pytest tests/test_registry.py")


# -- 9. searching from Python -----------------------------------------------------------------


def test_python_search_shares_the_commands_defaults() -> None:
    import inspect

    from ganarch.cli.search import search_command
    from ganarch.search.api import DEFAULTS, search

    cli = {
        name: p.default.default
        for name, p in inspect.signature(search_command).parameters.items()
        if name not in ("as_json", "storage")
    }
    cli["out"] = cli.pop("out_dir")
    py = {name: p.default for name, p in inspect.signature(search).parameters.items()}
    assert {k: v for k, v in py.items() if k != "storage"} == cli
    assert py == DEFAULTS and ganarch.search.__call__ is not None
    assert str(inspect.signature(ganarch.search)).startswith("(space: ")


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("trials", "5", "--trials: expected a whole number, got '5'"),
        ("steps", 2.5, "--steps: expected a whole number, got 2.5"),
        ("workers", True, "--workers: expected a whole number or 'auto', got True"),
        ("timeout", "60", "--timeout: expected seconds, got '60'"),
        ("data", None, "--data: expected text, got None"),
    ],
)
def test_python_search_names_an_option_of_the_wrong_type(tmp_path, option, value, says) -> None:
    with pytest.raises(GanarchError) as refused:  # not a TypeError from deep inside
        ganarch.search("quick", storage=tmp_path / "s.journal", **{option: value})
    assert str(refused.value) == says
    assert list(tmp_path.iterdir()) == []


def test_import_ganarch_stays_free_of_optuna_and_torch() -> None:
    code = (
        "import sys, ganarch; ganarch.search; ganarch.load_study; import ganarch.search.api; "
        "print(sorted({'torch', 'optuna'} & set(sys.modules)), callable(ganarch.search))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[] True"


_SPACE = """
template = "dcgan"
image_size = 8
width = 8
latent_dim = 8

[fixed]
batch_size = 32

[choices]
g_upsample = ["tconv", "nearest_conv"]
lr = { low = 1e-4, high = 1e-3, log = true }
"""


@pytest.fixture
def _fast(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GANARCH_CACHE", str(tmp_path_factory.getbasetemp() / "ganarch-cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_search_from_python_runs_resumes_and_returns_the_study(tmp_path, _fast) -> None:
    space = tmp_path / "tiny.toml"
    space.write_text(_SPACE)
    options = dict(
        data="digits",
        trials=2,
        steps=8,
        eval_every=8,
        sampler="random",
        pruner="none",
        device="cpu",
        storage=tmp_path / "py.journal",
        out=tmp_path / "runs",
        quiet=True,
    )
    study = ganarch.search(space, **options)
    assert isinstance(study, optuna.Study) and study.study_name == "tiny-digits"
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert (tmp_path / "runs" / "trial-0" / "spec.json").exists()

    again = ganarch.search(space, **options)  # the same call resumes: nothing left to run
    assert len(again.trials) == 2
    more = ganarch.search(space, **{**options, "trials": 3})
    assert len(more.trials) == 3
    with pytest.raises(GanarchError, match="other settings: steps=8 \\(now 9\\)"):
        ganarch.search(space, **{**options, "steps": 9})
    with pytest.raises(GanarchError, match="--sampler: 'tpee' is not one of"):
        ganarch.search(space, **{**options, "sampler": "tpee"})

    loaded = ganarch.load_study("tiny-digits", tmp_path / "py.journal")
    assert [t.number for t in loaded.trials] == [0, 1, 2]
    with pytest.raises(GanarchError, match="did you mean 'tiny-digits'"):
        ganarch.load_study("tiny-digit", tmp_path / "py.journal")
    with pytest.raises(GanarchError, match="no study storage"):
        ganarch.load_study("tiny-digits", tmp_path / "missing.journal")
