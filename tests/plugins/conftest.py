"""Fake plugin distributions for the plugin-system tests.

`fake_site.add(entry, code)` writes a module and a `*.dist-info` folder with
an entry point in the group `modelspec` to a temporary folder on sys.path:
exactly what `pip install` leaves behind, so discovery goes through
`importlib.metadata` as it does for a real package.
"""

from __future__ import annotations

import itertools
import sys
import textwrap

import pytest

from modelspec import plugins

_counter = itertools.count()


# A well-behaved op plugin: `double(x)` returns a tensor of x's type.
GOOD_OP = """
    from modelspec.hookspec import hookimpl
    from modelspec.ops.base import OpSpec


    class Double(OpSpec):
        name = "double"
        summary = "twice the input"
        shape_rule = "[*] -> [*]"
        category = "arithmetic"

        def infer(self, inputs, args):
            return inputs[0]


    @hookimpl
    def mspec_ops():
        return [Double()]
"""


class FakeSite:
    GOOD_OP = GOOD_OP

    def __init__(self, root):
        self.root = root

    def add(self, entry: str, code: str, dist: str | None = None, version: str = "0.1.0") -> str:
        """Install a plugin module under the entry point `entry`; returns the module's name."""
        module = f"fake_mspec_plugin_{entry}_{next(_counter)}"
        (self.root / f"{module}.py").write_text(textwrap.dedent(code), encoding="utf-8")
        dist = dist or f"fake-{entry}"
        info = self.root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8")
        with open(info / "entry_points.txt", "a", encoding="utf-8") as handle:
            handle.write(f"[modelspec]\n{entry} = {module}\n")
        return module


@pytest.fixture
def fake_site(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv(plugins.ALLOWLIST_VARIABLE, raising=False)
    # The process-wide manager is rebuilt for the test and restored after it.
    monkeypatch.setattr(plugins, "_default", None)
    monkeypatch.setattr(plugins, "_default_options", {})
    before = set(sys.modules)
    yield FakeSite(site)
    for name in set(sys.modules) - before:
        if name.startswith("fake_mspec_plugin_"):
            del sys.modules[name]
