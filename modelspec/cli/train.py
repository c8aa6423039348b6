"""`mspec train FILE`: run a regime declared in FILE."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from modelspec.cli.common import device_option, has_errors, report


def setup_error(exc) -> click.ClickException:
    """A TrainSetupError as click reports it: the option at fault named, exit status 2."""
    if exc.setting is None:
        return click.UsageError(str(exc))
    return click.BadParameter(str(exc), param_hint="--" + exc.setting.replace("_", "-"))


@click.command("train")
@click.argument("file", type=click.Path(path_type=str))
@click.option("--regime", help="the train block to run (default: the only one in FILE)")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs"),
    show_default=True,
    help="folder of run folders",
)
@click.option("--device", default="cpu", show_default=True, callback=device_option, help="cpu, cuda, cuda:1, ...")
@click.option("--max-steps", type=click.IntRange(1), help="stop after this many optimizer steps")
@click.option(
    "--resume",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[RUN]",
    help="continue the latest run of the regime in --out, or RUN",
)
@click.option("--seed", type=click.IntRange(0), help="overrides the regime's seed")
@click.option("--tensorboard", is_flag=True, help="also write TensorBoard event files")
@click.option("--progress/--no-progress", default=True, show_default=True, help="a live progress bar on a terminal")
@click.option(
    "--nproc",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="processes for a `distributed ddp` or `fsdp` regime (mspec starts torchrun)",
)
def train_command(file, regime, out, device, max_steps, resume, seed, tensorboard, progress, nproc):
    """Train a model as a `train` block of FILE declares."""
    from modelspec.api import TrainSetupError, compile_program, pick_regime, plan_run

    program, diagnostics, sources = compile_program(Path(file))
    if has_errors(diagnostics):
        report(diagnostics, sources)
        raise SystemExit(1)
    try:
        name = pick_regime(program, file, regime, choose="--regime")
        # `--resume` alone comes as "": the latest run
        trainer_class, resume_folder = plan_run(program, name, out, True if resume == "" else resume)
    except TrainSetupError as exc:
        raise setup_error(exc) from None
    spec = program.trains[name]

    from modelspec.train.loop import Options, TrainError

    if nproc > 1:
        raise SystemExit(_launch(nproc, spec, file, name, out, device, max_steps, resume_folder, seed, tensorboard))
    options = Options(
        out=out,
        device=device,
        max_steps=max_steps,
        seed=seed,
        resume=resume_folder,
        tensorboard=tensorboard,
        progress=progress,
    )
    try:
        with _stopped_by_sigterm():
            result = trainer_class(program, spec, options, sources=dict(sources.texts)).run()
    except TrainError as exc:
        import os

        rank = os.environ.get("RANK", "0") if "WORLD_SIZE" in os.environ else "0"
        click.echo(f"error: {exc}" if rank == "0" else f"error (process {rank}): {exc}", err=True)
        _leave(1)
    if result.main:  # one report for a distributed run, from its first process
        _print_result(result)
    _leave(0)


class Terminated(BaseException):
    """SIGTERM, raised where the run is (a BaseException: no `except Exception` catches it, nor
    click, which turns KeyboardInterrupt into "Aborted!"); `main` reports it and exits 143."""


@contextlib.contextmanager
def _stopped_by_sigterm():
    """SIGTERM (`kill`, a job scheduler) stops the run as Ctrl-C does, through the Trainer's
    clean-up: metrics.jsonl keeps every line written (a checkpoint being written is left
    unfinished and never loaded). Under torchrun the default stays: it stops a run's processes
    with SIGTERM when one fails, and their process group must not be torn down in order."""
    import os
    import signal
    import threading

    if "WORLD_SIZE" in os.environ or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Terminated

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _leave(code: int) -> None:
    """Exit with `code`. A process that torchrun started leaves at once once its output is flushed:
    gloo's threads, torn down with the interpreter, sometimes abort it ("terminate called without an
    active exception") after the run has finished and its process group is destroyed."""
    import os
    import sys

    from modelspec.train.distributed import launched_world

    if launched_world() > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if code:
        raise SystemExit(code)


def _launch(nproc, spec, file, name, out, device, max_steps, resume_folder, seed, tensorboard) -> int:
    """`--nproc N`: run this very command in N processes under torchrun; its exit status."""
    import os
    import subprocess
    import sys

    from modelspec.train.distributed import launch_command, launched_world

    if spec.distributed is None or spec.distributed.name not in ("ddp", "fsdp"):
        raise click.BadParameter(
            f"regime {name!r} declares no `distributed ddp` (or `fsdp`): add it to train in several processes",
            param_hint="--nproc",
        )
    if launched_world() > 1:
        raise click.BadParameter("this process already runs under torchrun", param_hint="--nproc")
    args = [file, "--regime", name, "--out", str(out), "--device", device, "--no-progress"]
    if max_steps is not None:
        args += ["--max-steps", str(max_steps)]
    if resume_folder is not None:  # resolved here, so that every process continues the same run
        args += ["--resume", str(resume_folder)]
    if seed is not None:
        args += ["--seed", str(seed)]
    if tensorboard:
        args.append("--tensorboard")
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    process = subprocess.Popen(launch_command(nproc, args), env=env, stderr=subprocess.PIPE, text=True, bufsize=1)
    for line in _without_launcher_noise(process.stderr):
        sys.stderr.write(line)
        sys.stderr.flush()
    code = process.wait()
    if code:
        click.echo(f"error: the run in {nproc} processes failed (torchrun's exit status {code})", err=True)
        return 1
    return 0


def _without_launcher_noise(lines):
    """The processes' own lines of stderr, without torchrun's: its log records (`W1124 12:00:00 …`)
    and the Python traceback it prints when a process fails (the processes print none: `main` turns
    every exception into a message)."""
    import re

    dropping = False
    for line in lines:
        if line.startswith("Traceback (most recent call last):"):
            dropping = True
        if dropping or re.match(r"[IWEF]\d{4} \d\d:\d\d:\d\d", line):
            continue
        yield line


def _print_result(result) -> None:
    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    how = {"done": "finished", "max_steps": "stopped at --max-steps", "early_stop": "stopped early"}[result.stopped]
    console.print(f"[bold]{how}[/] after {result.step} steps ({result.epoch} epochs)")
    for key, value in result.metrics.items():
        console.print(f"  {key:<16} {value:.4f}")
    if result.best:
        console.print(f"  best {result.best['metric']} {result.best['value']:.4f} at step {result.best['step']}")
    # Plain text on stdout, never wrapped or read as markup: scripts take the folder from here.
    click.echo(f"run folder: {result.folder}")
