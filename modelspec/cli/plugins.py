"""`mspec plugins`: every plugin, where it came from, and what it registers."""

from __future__ import annotations

import json

import click

# Component kinds in the order `mspec plugins` shows them (others follow).
KINDS_OF_COMPONENTS = ("dataset", "loss", "metric", "optimizer", "schedule", "regularizer")
PLURALS = {"loss": "losses", "distributed": "distributed strategies"}


def plugin_contents(registry, plugin: str) -> dict[str, list[str]]:
    """What `plugin` registered, by kind: {"ops": [...], "optimizers": [...], ...}."""
    contents: dict[str, list[str]] = {}
    ops = sorted(n for n, owner in registry.op_owner.items() if owner == plugin)
    if ops:
        contents["ops"] = ops
    components = sorted(key for key, owner in registry.component_owner.items() if owner == plugin)
    for kind in sorted({k for k, _ in components}, key=lambda k: (k not in KINDS_OF_COMPONENTS, k)):
        contents[PLURALS.get(kind, f"{kind}s")] = [n for k, n in components if k == kind]
    backends = sorted(n for n, owner in registry.backend_owner.items() if owner == plugin)
    if backends:
        contents["backends"] = backends
    lowerings = sorted(key for key, owner in registry.lowering_owner.items() if owner == plugin)
    for backend in sorted({b for b, _ in lowerings}):
        contents[f"lowerings for {backend}"] = [op for b, op in lowerings if b == backend]
    return contents


def describe_origin(info) -> str:
    import modelspec
    from modelspec.plugins import BUILTIN_PLUGINS

    if info.builtin and info.name in BUILTIN_PLUGINS:
        return f"built-in module (modelspec {modelspec.__version__})"
    if info.distribution:
        where = f"{info.distribution} {info.version or ''}".strip()
        kind = "built-in entry point" if info.builtin else "entry point"
        return f"{where}, {kind} `{info.target}`"
    return info.origin


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of text")
def plugins_command(as_json: bool) -> None:
    """List every plugin (built-in and installed), where it came from and what it registers."""
    from modelspec.plugins import registry as process_registry

    registry = process_registry().load_all()
    entries = []
    for name, info in sorted(registry.info.items(), key=lambda item: (not item[1].builtin, item[0])):
        entries.append(
            {
                "name": name,
                "origin": info.origin,
                "distribution": info.distribution,
                "version": info.version,
                "target": info.target,
                "location": info.location,
                "loaded": info.loaded,
                "reason": info.reason or None,
                "registers": plugin_contents(registry, name) if info.loaded else {},
                "problems": [p.message for p in registry.problems_of(name)],
            }
        )
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    for entry in entries:
        info = registry.info[entry["name"]]
        click.echo(f"{entry['name']}  ({describe_origin(info)})")
        if entry["location"]:
            click.echo(f"    from {entry['location']}")
        if not entry["loaded"]:
            click.echo(f"    {entry['reason']}")
        for kind, names in entry["registers"].items():
            shown = ", ".join(names) if len(names) <= 12 else ", ".join(names[:12]) + f", ... ({len(names)} in all)"
            click.echo(f"    {kind}: {shown}")
        for problem in entry["problems"]:
            click.echo(f"    problem: {problem}")
    others = [p for p in registry.problems if p.plugin not in registry.info]
    for problem in others:
        click.echo(f"problem: {problem}")
