"""`mspec plot RUN`: a run's curves as a PNG."""

import json
import subprocess
import sys

import pytest
from PIL import Image  # noqa: E402

from modelspec.cli import main  # noqa: E402
from modelspec.cli.plot import DPI, PANEL_HEIGHT, PANEL_WIDTH, figure_size, read_series  # noqa: E402


def write_run(folder, records, extra_lines=()):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}")
    lines = [json.dumps(r) for r in records] + list(extra_lines)
    (folder / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
    return folder


def supervised(steps=40, per_epoch=10):
    records = []
    for step in range(1, steps + 1):
        records.append(
            {"step": step, "epoch": (step - 1) // per_epoch, "loss": 2.0 / step, "lr": 0.1, "samples_per_s": 1e4}
        )
        if step % per_epoch == 0:
            epoch = step // per_epoch
            records.append(
                {"step": step, "epoch": epoch, "lr": 0.1, "val_loss": 1.5 / epoch, "val_accuracy": 0.5 + epoch / 10}
            )
    records.append({"step": steps, "epoch": steps // per_epoch, "event": "end", "stopped": "done", "seconds": 1.0})
    return records


def png_size(path):
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_default_output_two_panels(tmp_path, capsys):
    run = write_run(tmp_path / "mlp_sgd-20261123-120000", supervised())
    assert main(["plot", str(run)]) == 0
    out = run / "curves.png"
    assert out.is_file()
    # losses share a panel, val_accuracy has its own: two panels side by side
    assert png_size(out) == (2 * PANEL_WIDTH, PANEL_HEIGHT) == figure_size(2)
    assert str(out) in capsys.readouterr().err
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_output_option_and_metric(tmp_path):
    run = write_run(tmp_path / "run", supervised())
    target = tmp_path / "lr.png"
    assert main(["plot", str(run), "-o", str(target), "--metric", "lr"]) == 0
    assert png_size(target) == (PANEL_WIDTH, PANEL_HEIGHT)
    assert not (run / "curves.png").exists()


def test_three_panels_wrap_to_two_rows(tmp_path):
    records = [{"step": s, "epoch": 0, "loss": 1.0 / s} for s in range(1, 6)]
    records += [{"step": 5, "epoch": 1, "val_loss": 0.5, "val_accuracy": 0.9, "val_top5": 0.99}]
    run = write_run(tmp_path / "run", records)
    assert main(["plot", str(run)]) == 0
    assert png_size(run / "curves.png") == (2 * PANEL_WIDTH, 2 * PANEL_HEIGHT)


def test_gan_losses(tmp_path):
    records = []
    for step in range(10, 110, 10):
        records.append({"step": step, "epoch": 0, "loss": 1.0, "lr": 2e-4, "samples_per_s": 100.0})
    for epoch in range(1, 4):
        records.append({"step": 100 * epoch, "epoch": epoch - 1, "d_loss": 1.2, "g_loss": 0.8, "d_real": 0.6})
        records.append({"epoch": epoch, "event": "samples", "file": f"samples/epoch-{epoch:03d}.png"})
    run = write_run(tmp_path / "gan", records)
    series, warnings = read_series(run / "metrics.jsonl")
    assert list(series) == ["loss", "lr", "samples_per_s", "d_loss", "g_loss", "d_real"] and warnings == []
    assert main(["plot", str(run)]) == 0
    # [loss, d_loss, g_loss] and [d_real]
    assert png_size(run / "curves.png") == (2 * PANEL_WIDTH, PANEL_HEIGHT)


def test_overwrites_an_existing_png(tmp_path):
    run = write_run(tmp_path / "run", supervised())
    (run / "curves.png").write_bytes(b"old")
    assert main(["plot", str(run), "--metric", "loss"]) == 0
    assert png_size(run / "curves.png") == (PANEL_WIDTH, PANEL_HEIGHT)


def test_resumed_run_last_line_wins(tmp_path):
    records = [{"step": s, "epoch": 0, "loss": 1.0} for s in (10, 20, 30)]
    records += [{"event": "note", "text": "resumed"}]
    records += [{"step": s, "epoch": 0, "loss": 0.5} for s in (20, 30, 40)]
    run = write_run(tmp_path / "run", records)
    series, _ = read_series(run / "metrics.jsonl")
    assert series["loss"].xy() == ([10, 20, 30, 40], [1.0, 0.5, 0.5, 0.5])


def test_corrupt_lines_are_skipped_with_a_warning(tmp_path, capsys):
    records = supervised()
    n = len(records)
    run = write_run(
        tmp_path / "run",
        records,
        extra_lines=["", "[1, 2]", '{"step": 41, "epoch": 4, "loss": 0.0', "\x00\x01garbage"],
    )
    assert main(["plot", str(run)]) == 0
    err = capsys.readouterr().err
    assert f"warning: {run / 'metrics.jsonl'}:{n + 2}: not a JSON object, skipped" in err
    assert f"metrics.jsonl:{n + 3}: not valid JSON" in err and f"metrics.jsonl:{n + 4}: not valid JSON" in err
    assert f"metrics.jsonl:{n + 1}:" not in err  # a blank line is no corruption
    assert png_size(run / "curves.png") == (2 * PANEL_WIDTH, PANEL_HEIGHT)


def test_many_corrupt_lines_are_summarised(tmp_path, capsys):
    run = write_run(tmp_path / "run", supervised(), extra_lines=["{broken"] * 12)
    assert main(["plot", str(run)]) == 0
    err = capsys.readouterr().err
    assert err.count("not valid JSON") == 5 and "7 more lines" in err


@pytest.mark.parametrize(
    "lines",
    [
        [],
        ["", "   "],
        ["{oops", "not json"],
        [json.dumps({"step": 0, "epoch": 0, "event": "end", "stopped": "done", "seconds": 0.1})],
        [json.dumps({"event": "note", "text": "x"}), json.dumps({"loss": 1.0})],  # no step
    ],
)
def test_nothing_to_plot(tmp_path, capsys, lines):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
    assert main(["plot", str(run)]) == 1
    assert "nothing to plot" in capsys.readouterr().err
    assert not (run / "curves.png").exists()


def test_only_on_request_series_is_nothing_by_default(tmp_path, capsys):
    run = write_run(tmp_path / "run", [{"step": 1, "epoch": 0, "lr": 0.1, "samples_per_s": 5.0}])
    assert main(["plot", str(run)]) == 1
    assert "nothing to plot" in capsys.readouterr().err
    assert main(["plot", str(run), "--metric", "lr"]) == 0


def test_missing_folder(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "Invalid value for RUN" in err and "does not exist" in err


def test_file_is_not_a_run_folder(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    path.write_text("{}\n")
    assert main(["plot", str(path)]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_folder_without_metrics(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Invalid value for RUN" in err and "no metrics.jsonl" in err


def test_unknown_metric_suggests(tmp_path, capsys):
    run = write_run(tmp_path / "run", supervised())
    assert main(["plot", str(run), "--metric", "loss", "--metric", "val_acuracy"]) == 2
    err = capsys.readouterr().err
    assert "Invalid value for '--metric'" in err and "'val_acuracy'" in err
    assert "did you mean `val_accuracy`?" in err
    assert not (run / "curves.png").exists()


def test_unknown_metric_lists_the_series(tmp_path, capsys):
    run = write_run(tmp_path / "run", supervised())
    assert main(["plot", str(run), "--metric", "perplexity"]) == 2
    assert "the run has: loss, lr, samples_per_s, val_loss, val_accuracy" in capsys.readouterr().err


def test_output_folder_must_exist(tmp_path, capsys):
    run = write_run(tmp_path / "run", supervised())
    assert main(["plot", str(run), "-o", str(tmp_path / "no" / "such" / "x.png")]) == 2
    assert "'-o' / '--output'" in capsys.readouterr().err


def test_importing_the_cli_does_not_import_matplotlib():
    code = "import sys, modelspec.cli; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_figure_size():
    assert figure_size(1) == (PANEL_WIDTH, PANEL_HEIGHT)
    assert figure_size(4) == (2 * PANEL_WIDTH, 2 * PANEL_HEIGHT)
    assert figure_size(5) == (2 * PANEL_WIDTH, 3 * PANEL_HEIGHT)
    assert DPI == 100
