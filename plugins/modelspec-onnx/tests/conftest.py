"""Fixtures of the ONNX backend's tests (helpers live in onnx_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from onnx_helpers import Reference


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """reference(spec, model=None) -> Reference, built once per module and arguments."""
    built: dict = {}

    def make(spec: str, model: str | None = None) -> Reference:
        key = (spec, model)
        if key not in built:
            built[key] = Reference(spec, model, tmp_path_factory.mktemp(Path(spec).stem))
        return built[key]

    return make


@pytest.fixture(scope="module")
def reference_from_text(tmp_path_factory):
    """reference_from_text(name, text) -> Reference of the last model of a spec given as text."""

    def make(name: str, text: str) -> Reference:
        folder = tmp_path_factory.mktemp(name)
        (folder / f"{name}.mspec").write_text(text)
        return Reference(folder / f"{name}.mspec", None, folder)

    return make
