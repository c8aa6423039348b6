"""Registers the PyTorch backend and its lowerings through the plugin hooks,
exactly as a third-party backend would (entry point `modelspec: torch`)."""

from __future__ import annotations

from modelspec.hookspec import hookimpl


class TorchBackend:
    name = "torch"
    description = "readable PyTorch source (nn.Module classes); runs with torch alone"
    file_suffix = ".py"

    def generate(self, program, model: str) -> str:
        from modelspec.plugins import registry
        from modelspec_torch.codegen import generate_source

        # The process registry: lowerings that plugins register through `mspec_lowerings` are used.
        return generate_source(program, model, registry=registry())[0]

    def build(self, program, model: str, **options):
        from modelspec_torch.build import build

        return build(program, model, **options)


@hookimpl
def mspec_backends():
    return [TorchBackend()]


@hookimpl
def mspec_lowerings():
    from modelspec_torch.lowerings import LOWERINGS

    return LOWERINGS
