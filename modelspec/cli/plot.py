"""`mspec plot RUN`: a run's loss and metric curves, as a PNG.

Reads `RUN/metrics.jsonl` (the lines `mspec train` writes) and draws every
numeric series against the step: the training loss, the evaluation lines'
`val_*` values, a gan regime's `d_loss`, `g_loss` and `d_real`. Losses
share the first panel; every other series gets a panel of its own. `lr`
and `samples_per_s` are drawn only when `--metric` asks for them.

A resumed run appends to the same file and may log a step again: the
later line wins. Lines that are not JSON objects (a line cut short by a
crash) are skipped with a warning; a file with nothing to draw is an error.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import click

from modelspec.fileio import write_atomically

# Keys of a metrics line that are not curves (or only on request).
COORDINATES = ("step", "epoch")
ON_REQUEST = ("lr", "samples_per_s")

PANEL_WIDTH = 700  # pixels per panel, at DPI
PANEL_HEIGHT = 450
DPI = 100
COLUMNS = 2  # panels per row, at most
MAX_WARNINGS = 5


class Series:
    """One curve: value by step (a step logged again keeps its last value)."""

    def __init__(self, name: str):
        self.name = name
        self.points: dict[float, float] = {}

    def add(self, step: float, value: float) -> None:
        self.points.pop(step, None)  # a resumed run's value replaces the earlier one
        self.points[step] = value

    def xy(self) -> tuple[list[float], list[float]]:
        steps = sorted(self.points)
        return steps, [self.points[s] for s in steps]


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def read_series(path: Path) -> tuple[dict[str, Series], list[str]]:
    """The curves of a metrics.jsonl, in the order their names first appear,
    and warnings for the lines skipped."""
    series: dict[str, Series] = {}
    warnings: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            text = line.strip()
            if not text:
                continue
            try:
                record = json.loads(text)
            except ValueError:
                warnings.append(f"{path}:{number}: not valid JSON, skipped")
                continue
            if not isinstance(record, dict):
                warnings.append(f"{path}:{number}: not a JSON object, skipped")
                continue
            if "event" in record:  # notes, samples, the end of a run
                continue
            step = record.get("step")
            if not _number(step) or not math.isfinite(step):
                continue
            for key, value in record.items():
                if key in COORDINATES or not _number(value):
                    continue
                series.setdefault(key, Series(key)).add(step, float(value))
    return series, warnings


def default_names(series: dict[str, Series]) -> list[str]:
    return [name for name in series if name not in ON_REQUEST]


def is_loss(name: str) -> bool:
    return name == "loss" or name.endswith("_loss")


def panels(names: list[str]) -> list[list[str]]:
    """Losses together in the first panel, then one panel per other series."""
    losses = [n for n in names if is_loss(n)]
    others = [[n] for n in names if not is_loss(n)]
    return ([losses] if losses else []) + others


def figure_size(count: int) -> tuple[int, int]:
    """The PNG's (width, height) in pixels for `count` panels."""
    columns = min(count, COLUMNS)
    rows = math.ceil(count / columns)
    return columns * PANEL_WIDTH, rows * PANEL_HEIGHT


def draw(series: dict[str, Series], groups: list[list[str]], title: str):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width, height = figure_size(len(groups))
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)  # the Agg backend, without touching pyplot's global state
    columns = min(len(groups), COLUMNS)
    rows = math.ceil(len(groups) / columns)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, group in zip(axes, groups):
        for name in group:
            steps, values = series[name].xy()
            few = len(steps) <= 50
            ax.plot(steps, values, label=name, marker="o" if few else None, markersize=3, linewidth=1.2)
        ax.set_xlabel("step")
        ax.set_ylabel("loss" if is_loss(group[0]) else group[0])
        ax.set_title(", ".join(group))
        ax.grid(True, alpha=0.3)
        if len(group) > 1:
            ax.legend()
    for ax in axes[len(groups) :]:
        ax.set_visible(False)
    figure.suptitle(title)
    return figure


def save_png(figure, path: Path) -> None:
    """Write the figure to `path` atomically: a reader never sees half a PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    write_atomically(path, buffer.getvalue())


@click.command("plot")
@click.argument("run", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="the PNG to write (default: RUN/curves.png)",
)
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    metavar="NAME",
    help="draw only this series (repeatable): loss, val_loss, val_accuracy, d_loss, lr, ...",
)
def plot_command(run: Path, output: Path | None, metrics: tuple[str, ...]) -> None:
    """Draw the loss and metric curves of the run folder RUN (its metrics.jsonl) to a PNG."""
    if not run.is_dir():
        what = "does not exist" if not run.exists() else "is not a folder"
        raise click.BadParameter(f"{run} {what}: expected a run folder of `mspec train`", param_hint="RUN")
    log = run / "metrics.jsonl"
    if not log.is_file():
        raise click.BadParameter(f"{run} is not a run folder (it has no metrics.jsonl)", param_hint="RUN")
    output = output if output is not None else run / "curves.png"
    if not (output.parent if str(output.parent) else Path(".")).is_dir():
        raise click.BadParameter(f"the folder of {output} does not exist", param_hint="'-o' / '--output'")

    series, warnings = read_series(log)
    for text in warnings[:MAX_WARNINGS]:
        click.echo(f"warning: {text}", err=True)
    if len(warnings) > MAX_WARNINGS:
        click.echo(f"warning: {len(warnings) - MAX_WARNINGS} more lines of {log} skipped", err=True)

    if metrics:
        names: list[str] = []
        for name in metrics:
            if name not in series:
                from modelspec.diagnostics import suggestion

                known = ", ".join(series) if series else "none"
                hint = suggestion(name, series) or f"the run has: {known}"
                raise click.BadParameter(f"{log} has no series {name!r} ({hint})", param_hint="'--metric'")
            if name not in names:
                names.append(name)
    else:
        names = default_names(series)
    if not names:
        click.echo(f"error: {log} holds nothing to plot (no line with a step and a loss or metric)", err=True)
        raise SystemExit(1)

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        click.echo("error: `mspec plot` needs matplotlib: pip install matplotlib", err=True)
        raise SystemExit(1) from None
    figure = draw(series, panels(names), run.resolve().name)
    save_png(figure, output)
    click.echo(f"wrote {output}", err=True)
