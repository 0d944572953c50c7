"""Commands about the building blocks, templates and specs: ``blocks``, ``templates``,
``plugins``, ``validate``, ``inspect`` and ``spec``. All read-only except ``spec -o``; every read command has ``--json``.
"""

from __future__ import annotations

import dataclasses
import inspect as pyinspect
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table
from rich.text import Text

from ganarch.cli._common import (
    JSON_OPTION,
    TEMPLATE_SIZE,
    echo,
    fail,
    fmt_count,
    fmt_params,
    note,
    parse_value,
    print_json,
    print_table,
    template_ref,
    template_spec,
    write_new_file,
)
from ganarch.plugin import manager as plugin_manager
from ganarch.registry import BlockInfo, block_kinds, blocks, type_name, unknown_kind
from ganarch.templates import TemplateInfo, templates

if TYPE_CHECKING:  # the builder imports torch: load it only when a command needs it
    from ganarch.builder import NetPlan

__all__ = ["register"]

#: How a spec argument is described in every command's help.
SPEC_HELP = "A spec file (.json, .toml, .yaml) or 'TEMPLATE[:SIZE]', e.g. 'dcgan:32'."


# --- blocks ----------------------------------------------------------------------------------


def _signature(info: BlockInfo) -> list[str]:
    parts = []
    for name, p in info.parameters().items():
        if p.kind is p.VAR_KEYWORD:
            parts.append(f"**{name}")
        elif p.kind is p.VAR_POSITIONAL:
            continue
        elif p.default is pyinspect.Parameter.empty:
            parts.append(name)
        else:
            parts.append(f"{name}={p.default!r}")
    return parts


def _params_json(info: BlockInfo) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, p in info.parameters().items():
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        default = p.default
        if default is pyinspect.Parameter.empty:
            result[name] = {"required": True}
        else:
            ok = isinstance(default, str | int | float | bool) or default is None
            result[name] = {"required": False, "default": default if ok else repr(default)}
        checked = type_name(info.param_types[name]) if name in info.param_types else None
        if checked is not None:  # what a spec's value is checked against
            result[name]["type"] = checked
    return result


def blocks_command(
    kind: str | None = typer.Option(
        None,
        "--kind",
        "-k",
        help="Only blocks of this kind: conv, upsample, downsample, norm, activation, project, "
        "head, dense, wrap, or a kind a plugin registers (the listing shows every kind).",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """List the registered blocks: name, kind, plugin, parameters and description."""
    kinds = block_kinds()
    if kind is not None and kind not in kinds:
        fail(f"--kind: {unknown_kind(kind).replace('unknown kind', 'unknown block kind', 1)}")
    table = blocks(kind)
    if as_json:
        print_json(
            [
                {
                    "name": b.name,
                    "kind": b.kind,
                    "plugin": b.plugin,
                    "params": _params_json(b),
                    "description": b.description,
                }
                for b in table.values()
            ]
        )
        return
    # One section per kind, headed by the kind and its shape rule, instead of a kind column:
    # the table then fits 80 columns with every name and parameter whole.
    t = Table(title=f"{len(table)} blocks" + (f" of kind {kind!r}" if kind else ""))
    t.add_column("name", no_wrap=True)
    t.add_column("plugin", no_wrap=True)
    t.add_column("params")
    t.add_column("description")
    for k, kind_info in kinds.items():
        group = sorted((b for b in table.values() if b.kind == k), key=lambda b: b.name)
        if not group:
            continue
        if kind is None:
            t.add_row(
                Text(f"kind: {k}", style="underline"),
                "",
                "",
                Text(kind_info.description, style="dim"),
            )
        for b in group:  # Text, not markup: a description's "[...]" is shown as written
            t.add_row(
                Text(b.name, style="bold"),
                Text(b.plugin),
                Text(", ".join(_signature(b))),
                Text(b.description),
                end_section=b is group[-1],
            )
    print_table(t)


# --- templates -------------------------------------------------------------------------------


def _takes(info: TemplateInfo, choice: str) -> str:
    """What a choice's value is, in words: ``"norm block or none"``, ``"integer >= 0"``."""
    if choice in info.block_choices:
        text = f"{info.block_choices[choice]} block"
        return text + " or none" if choice in info.optional else text
    if choice in info.int_choices:
        return "integer >= 0"
    if choice in info.bool_choices:
        return "true or false"
    return type(info.defaults[choice]).__name__


def _notes(info: TemplateInfo, choice: str) -> list[str]:
    notes = []
    if choice in info.param_choices:
        notes.append(f"block params as {choice}_params")
    if choice in info.requires:
        needs = info.requires[choice]
        notes.append(f"only when {'one of ' if len(needs) > 1 else ''}{', '.join(needs)} is set")
    notes += [f"claim {c}" for c, names in info.claims.items() if choice in names]
    return notes


def _template_json(info: TemplateInfo, choices: bool) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": info.name,
        "plugin": info.plugin,
        "description": info.description,
        "n_choices": len(info.defaults),
    }
    if choices:
        d["choices"] = [
            {
                "name": c,
                "default": v,
                "takes": _takes(info, c),
                "block_kind": info.block_choices.get(c),
                "notes": _notes(info, c),
            }
            for c, v in info.defaults.items()
        ]
    return d


def templates_command(
    name: str | None = typer.Argument(
        None, help="Show this template's choices (default: list every template)."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """List the registered templates, or one template's choices with their defaults.

    A template is what 'TEMPLATE[:SIZE]' names in train, inspect and spec, and what a
    search space's 'template = ...' searches.
    """
    if name is not None:
        if ":" in name:
            fail(f"{name}: give the template's name only, without ':SIZE'")
        info = template_ref(name)[0]
        if as_json:
            print_json(_template_json(info, choices=True))
            return
        t = Table(title=f"template {info.name!r} (plugin {info.plugin!r}): {info.description}")
        for col in ("choice", "default", "takes", "notes"):
            t.add_column(col, no_wrap=col == "choice")
        for c, v in info.defaults.items():
            t.add_row(
                Text(c, style="bold"),
                Text(repr(v)),
                _takes(info, c),
                Text("; ".join(_notes(info, c))),
            )
        print_table(t)
        note("training settings (lr_g, lr_d, beta1, ...) are choices of every template")
        return
    table = templates()
    if as_json:
        print_json([_template_json(i, choices=False) for i in table.values()])
        return
    t = Table(title=f"{len(table)} template{'' if len(table) == 1 else 's'}")
    for col in ("name", "plugin", "choices", "description"):
        t.add_column(
            col, no_wrap=col != "description", justify="right" if col == "choices" else "left"
        )
    for i in table.values():
        t.add_row(
            Text(i.name, style="bold"), Text(i.plugin), str(len(i.defaults)), Text(i.description)
        )
    print_table(t)


# --- plugins ---------------------------------------------------------------------------------


def plugins_command(as_json: bool = JSON_OPTION) -> None:
    """List the plugins found (built-in, entry points, registered in code), with any error."""
    found = blocks()  # runs every plugin's hook, so hook errors are recorded too
    per_plugin: dict[str, list[str]] = {}
    for b in found.values():
        per_plugin.setdefault(b.plugin, []).append(b.name)
    template_table = templates()
    per_plugin_templates: dict[str, list[str]] = {}
    for tpl in template_table.values():
        per_plugin_templates.setdefault(tpl.plugin, []).append(tpl.name)
    infos = plugin_manager.plugins()
    if as_json:
        from ganarch.search.strategies import pruners, samplers

        strategies = {
            "block_kinds": block_kinds(),
            "templates": template_table,
            "samplers": samplers(),
            "pruners": pruners(),
        }
        print_json(
            [
                {**dataclasses.asdict(i), "blocks": per_plugin.get(i.name, [])}
                | {
                    k: [n for n, e in t.items() if e.plugin == i.name]
                    for k, t in strategies.items()
                }
                for i in infos
            ]
        )
        _exit_if_failed(infos)
        return
    t = Table(title=f"{len(infos)} plugin{'' if len(infos) == 1 else 's'}")
    for col in ("name", "source", "module", "version"):
        t.add_column(col, no_wrap=True)
    t.add_column("blocks", justify="right")
    t.add_column("templates", justify="right")
    t.add_column("error")
    for i in infos:
        style = "red" if i.error else None
        t.add_row(
            Text(i.name),
            i.source,
            Text(i.module),
            Text(i.version or ""),
            str(len(per_plugin.get(i.name, []))),
            str(len(per_plugin_templates.get(i.name, []))),
            Text(i.error or ""),
            style=style,
        )
    print_table(t)
    if plugin_manager.disabled():
        note(f"third-party plugins are off ({plugin_manager.DISABLE_ENV} is set)")
    _exit_if_failed(infos)


def _exit_if_failed(infos: list[plugin_manager.PluginInfo]) -> None:
    """Exit 1 when a plugin failed: a script checking its set-up must see it, not exit 0."""
    failed = [i.name for i in infos if i.error]
    if not failed:
        return
    names = ", ".join(repr(n) for n in failed)
    note(
        f"error: {len(failed)} plugin{'s' if len(failed) > 1 else ''} failed to load ({names}): "
        "their blocks are missing; fix the error shown, uninstall the plugin, or set "
        f"{plugin_manager.DISABLE_ENV}=1 to load the built-ins only"
    )
    raise typer.Exit(1)


# --- validate / inspect ----------------------------------------------------------------------


def validate_command(
    spec: str = typer.Argument(..., help=SPEC_HELP),
) -> None:
    """Check a spec against the registered blocks and infer every shape; exit 2 if invalid."""
    from ganarch.builder import plan

    p = plan(template_spec(spec))
    echo(
        f"ok: {spec} — G {fmt_count(p.generator.n_params)} params, "
        f"D {fmt_count(p.discriminator.n_params)} params"
    )


def _net_json(net: NetPlan) -> dict[str, Any]:
    return {
        "in_shape": list(net.in_shape),
        "out_shape": list(net.out_shape),
        "parameters": net.n_params,
        "layers": [
            {
                "index": layer.index,
                "block": layer.block.name,
                "kind": layer.block.kind,
                "params": dict(layer.params),
                "wrap": [w.name for w in layer.wrap],
                "in_shape": list(layer.in_shape),
                "out_shape": list(layer.out_shape),
                "parameters": layer.n_params,
            }
            for layer in net.layers
        ],
    }


def _net_table(title: str, net: NetPlan) -> Table:
    t = Table(title=title, title_justify="left")
    t.add_column("#", justify="right", no_wrap=True)
    t.add_column("block", no_wrap=True)  # a wrap shows under its layer's block: "+ name"
    t.add_column("params")
    t.add_column("input", justify="right", no_wrap=True)
    t.add_column("output", justify="right", no_wrap=True)
    t.add_column("parameters", justify="right", no_wrap=True)
    for layer in net.layers:
        block = Text(layer.block.name, style="bold")
        for w in layer.wrap:
            block.append(f"\n+ {w.name}")
        t.add_row(
            str(layer.index),
            block,
            Text(fmt_params(layer.params)),
            str(layer.in_shape),
            str(layer.out_shape),
            fmt_count(layer.n_params),
        )
    return t


def inspect_command(
    spec: str = typer.Argument(..., help=SPEC_HELP),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show every layer of G and D with its shapes and parameter count, without building.

    'dcgan' (64×64) or 'dcgan:32' shows the paper's DCGAN without a spec file; any
    registered template works the same way ('ganarch templates' lists them).
    """
    from ganarch.builder import plan

    s = template_spec(spec)
    p = plan(s)
    total = p.generator.n_params + p.discriminator.n_params
    if as_json:
        print_json(
            {
                "spec": spec,
                "image_size": s.image_size,
                "channels": s.channels,
                "latent_dim": s.latent_dim,
                "generator": _net_json(p.generator),
                "discriminator": _net_json(p.discriminator),
                "parameters": total,
            }
        )
        return
    echo(
        f"{spec}: {s.image_size}×{s.image_size} images, {s.channels} channel(s), "
        f"latent {s.latent_dim}"
    )
    print_table(_net_table("generator", p.generator))
    print_table(_net_table("discriminator", p.discriminator))
    echo(f"generator:     {fmt_count(p.generator.n_params):>12} parameters")
    echo(f"discriminator: {fmt_count(p.discriminator.n_params):>12} parameters")
    echo(f"total:         {fmt_count(total):>12} parameters")


# --- spec ------------------------------------------------------------------------------------


def _parse_choices(choices: list[str]) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for item in choices:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--choice {item!r}: expected KEY=VALUE, e.g. g_upsample=nearest_conv")
        key = key.strip()
        if key in _OPTION_OF:  # a setting of its own option, not a template choice
            fail(f"--choice {item!r}: {key} is set with {_OPTION_OF[key]}, not --choice")
        parsed[key] = parse_value(value)
    return parsed


#: Template arguments that ``spec`` takes as options of their own.
_OPTION_OF = {
    "image_size": "--image-size (or TEMPLATE:SIZE)",
    "channels": "--channels",
    "latent_dim": "--latent-dim",
    "width": "--width",
}


def spec_command(
    template: str = typer.Argument(
        "dcgan", help="The template: 'TEMPLATE' or 'TEMPLATE:SIZE' (see 'ganarch templates')."
    ),
    image_size: int | None = typer.Option(
        None, "--image-size", "-s", help="Image height and width (default 64, or SIZE)."
    ),
    channels: int = typer.Option(3, "--channels", "-c", help="Image channels (1 or 3)."),
    latent_dim: int | None = typer.Option(
        None,
        "--latent-dim",
        help="Length of the noise vector (default: the template's; dcgan 100).",
    ),
    width: int | None = typer.Option(
        None, "--width", "-w", help="The template's width (default: the template's; dcgan 64)."
    ),
    choice: list[str] = typer.Option(
        [],
        "--choice",
        help="A template choice KEY=VALUE (repeatable), e.g. d_norm=none, g_dense_layers=1; "
        "values are read as JSON when they parse.",
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write here (.json or .yaml); default: JSON on stdout."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output file."),
) -> None:
    """Write a template's spec (the paper's DCGAN unless --choice says otherwise)."""
    info, size = template_ref(template)
    if size is not None and image_size is not None and size != image_size:
        fail(f"{template} and --image-size {image_size} disagree; give one of them")
    s = info.spec(
        size or image_size or TEMPLATE_SIZE,
        channels=channels,
        latent_dim=latent_dim,
        width=width,
        **_parse_choices(choice),
    )
    if output is None:
        print_json(s.to_dict())
        return
    if output.suffix.lower() not in (".json", ".yaml", ".yml"):
        fail(f"{output}: a spec is written as .json or .yaml")
    write_new_file(output, s.save, force=force)
    note(f"wrote {output}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("blocks")(blocks_command)
    app.command("templates")(templates_command)
    app.command("plugins")(plugins_command)
    app.command("validate")(validate_command)
    app.command("inspect")(inspect_command)
    app.command("spec")(spec_command)
