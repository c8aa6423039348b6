"""`mspec ops [NAME]`: the ops the registry knows, or one op in detail."""

from __future__ import annotations

import json

import click


def op_details(registry, op) -> dict:
    from modelspec.ops.init import INIT_ARGUMENT, takes_init
    from modelspec.ops.reference import _default_text, _type_text, signature

    owner = registry.op_owner.get(op.name, "?")
    arguments = [
        {"name": name, "type": _type_text(field.annotation), "default": _default_text(field)}
        for name, field in op.Args.model_fields.items()
    ]
    if takes_init(op):  # the elaborator's, not a field of the op's Args, and as real an argument
        arguments.append(dict(INIT_ARGUMENT))
    return {
        "name": op.name,
        "summary": op.summary,
        "category": op.category,
        "call": signature(op),
        "shape": op.shape_rule,
        "arrow": list(op.arrow) if op.arrow else None,
        "inputs": _inputs_text(op),
        "arguments": arguments,
        "plugin": owner,
        "builtin": registry.is_builtin(owner),
        "backends": registry.backends_lowering(op.name),
    }


def _inputs_text(op) -> str:
    if op.max_inputs is None:
        return f"{op.min_inputs} or more tensors"
    if op.min_inputs == op.max_inputs:
        return f"{op.min_inputs} tensor{'s' if op.min_inputs != 1 else ''}"
    return f"{op.min_inputs} to {op.max_inputs} tensors"


@click.command("ops")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of text")
def ops_command(name: str | None, as_json: bool) -> None:
    """List the ops (built-in and from plugins), or show op NAME: its call,
    shape rule, arguments, plugin, and the backends that lower it."""
    from modelspec.plugins import registry as process_registry

    registry = process_registry()
    if name is None:
        rows = [op_details(registry, registry.ops[n]) for n in sorted(registry.ops)]
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        width = max(len(r["name"]) for r in rows)
        for category in sorted({r["category"] for r in rows}):
            click.echo(f"{category}:")
            for row in (r for r in rows if r["category"] == category):
                origin = "" if row["builtin"] else f"  [plugin {row['plugin']}]"
                backends = ", ".join(row["backends"]) or "no backend"
                click.echo(f"  {row['name']:<{width}}  {row['summary']}{origin}  ({backends})")
        return
    op = registry.op(name)
    if op is None:
        from modelspec.diagnostics import suggestion

        hint = registry.hint(op=name) or suggestion(name, registry.ops) or "`mspec ops` lists them"
        raise click.BadParameter(f"no op named {name!r} ({hint})", param_hint="NAME")
    details = op_details(registry, op)
    if as_json:
        click.echo(json.dumps(details, indent=2))
        return
    origin = "built-in" if details["builtin"] else f"plugin {registry.describe(details['plugin'])}"
    click.echo(f"{op.name}  ({details['category']}, {origin})")
    if op.summary:
        click.echo(f"  {op.summary}")
    click.echo(f"  call:     {details['call']}")
    if op.shape_rule:
        click.echo(f"  shape:    {op.shape_rule}")
    if op.arrow:
        click.echo(f"  arrow:    `a -> b` gives `{op.arrow[0]}` and `{op.arrow[1]}`")
    click.echo(f"  inputs:   {details['inputs']}")
    if details["arguments"]:
        click.echo("  arguments:")
        width = max(len(a["name"]) for a in details["arguments"])
        for arg in details["arguments"]:
            click.echo(f"    {arg['name']:<{width}}  {arg['type']}  ({arg['default']})")
        from modelspec.ops.init import INITIALISERS, takes_init

        if takes_init(op):
            click.echo(f"  initialisers: {', '.join(INITIALISERS)} (docs/language.md has their arguments)")
    backends = details["backends"]
    click.echo(f"  lowered by: {', '.join(backends) if backends else 'no backend (it can be checked, not built)'}")
