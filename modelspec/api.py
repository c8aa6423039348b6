"""The public API: a thin composition of the pipeline's stages.

program = modelspec.load("specs/gpt2.mspec")     # parse + check, or raise SpecError
diagnostics = modelspec.check("specs/gpt2.mspec")
table = program.summary("GPT2")
result = modelspec.train("specs/mlp_digits.mspec", max_steps=100)  # what `mspec train` does
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

from modelspec.diagnostics import CompileError, Diagnostic, Severity, SourceMap, render_all
from modelspec.ir.graph import Program
from modelspec.semantics.analyse import analyse
from modelspec.semantics.loader import Sources, load_sources


class SpecError(CompileError):
    """A spec has mistakes; `str()` renders them with their source lines."""

    def __init__(self, diagnostics: list[Diagnostic], sources: SourceMap):
        super().__init__(diagnostics)
        self.sources = sources

    def __str__(self) -> str:
        return render_all(self.diagnostics, self.sources)


def _looks_like_text(source: str) -> bool:
    return "\n" in source or "{" in source or not source.strip()


def read(source: str | Path, name: str | None = None) -> Sources:
    """Load a spec from a path or from its text (with an optional display name)."""
    if isinstance(source, Path) or (isinstance(source, str) and not _looks_like_text(source)):
        return load_sources(path=source)
    return load_sources(text=source, name=name or "<string>")


def compile_program(source: str | Path, name: str | None = None) -> tuple[Program, list[Diagnostic], SourceMap]:
    from modelspec.plugins import registry

    # Checking recurses over expressions, whose depth the parser bounds (MAX_NESTING);
    # make room for that bound.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20_000))
    # Checking builds many small objects and frees none until it returns: the cyclic
    # collector would rescan the growing heap again and again (cost superlinear in
    # the spec's size), so it waits until the end.
    collecting = gc.isenabled()
    gc.disable()
    try:
        sources = read(source, name)
        program, diagnostics = analyse(sources, registry())
    finally:
        if collecting:
            gc.enable()
    program._sources = sources.sources
    return program, diagnostics, sources.sources


def check(source: str | Path, name: str | None = None) -> list[Diagnostic]:
    """Every diagnostic for a spec (empty when it is consistent)."""
    _, diagnostics, _ = compile_program(source, name)
    return diagnostics


def load(source: str | Path, name: str | None = None) -> Program:
    """The checked Program of a spec; raises SpecError when it has errors."""
    program, diagnostics, sources = compile_program(source, name)
    errors = [d for d in diagnostics if d.severity is Severity.ERROR]
    if errors:
        raise SpecError(errors, sources)
    return program


def _program(program_or_path: Program | str | Path) -> Program:
    return program_or_path if isinstance(program_or_path, Program) else load(program_or_path)


def backend(name: str):
    """The backend registered under `name` (built-in or from a plugin)."""
    from modelspec.plugins import registry

    found = registry().backend(name)
    if found is None:
        from modelspec.diagnostics import suggestion

        known = sorted(registry().backends)
        hint = registry().hint(backend=name) or suggestion(name, known) or "backends: " + ", ".join(known)
        message = f"no backend named {name!r} ({hint})"
        # A plugin that failed to load, or whose `mspec_backends` broke, may be the one that provides it.
        broken = [str(p) for p in registry().problems if p.may_hide_a_backend]
        if broken:
            message += "; a plugin problem may be why: " + "; ".join(broken[:3])
            message += f" (and {len(broken) - 3} more)" if len(broken) > 3 else ""
        raise ValueError(message)
    return found


def compile_source(program_or_path: Program | str | Path, model: str | None = None, backend_name: str = "torch") -> str:
    """The source a backend generates for `model` (what `mspec compile` writes)."""
    program = _program(program_or_path)
    return backend(backend_name).generate(program, program.model(model).name)


def build(
    program_or_path: Program | str | Path,
    model: str | None = None,
    backend: str = "torch",
    **options,
):
    """A runnable module for `model`: for the torch backend an `nn.Module`, an
    instance of exactly the class in the source `compile_source` returns.

    Options (torch): device="cpu" | "cuda" | "meta", dtype=None | "bfloat16" | ...,
    seed=0 (initialisation is reproducible), compile=False (wrap in torch.compile).
    """
    program = _program(program_or_path)
    return globals()["backend"](backend).build(program, program.model(model).name, **options)


# ---- training ---------------------------------------------------------------------------
# `train` runs a regime in this process; `mspec train` shares its set-up (pick_regime,
# check_device, plan_run) and adds what only a command has: torchrun, exit codes, the report.


class TrainSetupError(ValueError):
    """A run that cannot start: no such regime (or several and none chosen), a device that
    cannot train, no run to resume. `setting` names the argument at fault ("regime",
    "device", "resume", "max_steps", "seed"), or is None when the spec has no regime to run."""

    def __init__(self, message: str, setting: str | None = None):
        super().__init__(message)
        self.setting = setting


def pick_regime(program: Program, where: str, regime: str | None, choose: str = "`regime=`") -> str:
    """The name of the train block to run: `regime`, or the only one the spec declares.
    `where` names the spec in messages; `choose` says how the caller picks a regime."""
    from modelspec.diagnostics import suggestion

    names = list(program.trains)
    if regime is not None:
        if regime not in program.trains:
            hint = suggestion(regime, names) or ("regimes: " + ", ".join(names) if names else "it declares none")
            raise TrainSetupError(f"no train regime {regime!r} in {where} ({hint})", "regime")
        return regime
    if not names:
        raise TrainSetupError(f"{where} declares no `train` block")
    if len(names) > 1:
        raise TrainSetupError(f"{where} declares several regimes ({', '.join(names)}): choose one with {choose}")
    return names[0]


def check_device(device: str) -> str:
    """`device` when it is one torch knows, is present here and holds real tensors (a run needs
    real weights), checked before anything is built."""
    if device == "cpu":  # the default: no need to import torch to know it
        return device
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise TrainSetupError(f"{device!r} is not a device (cpu, cuda, cuda:1, ...)", "device") from None
    if parsed.type == "meta":
        # Meta tensors have shapes and no data.
        raise TrainSetupError(f"{device!r} holds no data, and the model needs real weights: use cpu or cuda", "device")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainSetupError(f"{device!r}: no CUDA device is available here", "device")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise TrainSetupError(f"{device!r}: no CUDA device {parsed.index} here ({count} available)", "device")
    return device


def plan_run(program: Program, regime: str, out: Path, resume: str | Path | bool | None = None):
    """The trainer class for `regime` (GanTrainer when its model is a gan) and the run folder to
    continue: None for a new run (`resume` None or False), the latest run of the regime in `out`
    for this very model (`resume=True`), or the folder `resume` names."""
    from modelspec.train.loop import Options, Trainer, latest_run

    spec = program.trains[regime]
    trainer_class = Trainer
    if spec.model.kind == "gan":
        from modelspec.train.gan import GanTrainer

        trainer_class = GanTrainer
    if resume is None or resume is False:
        return trainer_class, None
    if resume is True:
        spec_hash = trainer_class(program, spec, Options()).expected_spec_hash()
        folder = latest_run(out, regime, spec_hash) if spec_hash else None
        if folder is None:
            others = " (there are runs of it for another version of the model)" if any(out.glob(f"{regime}-*")) else ""
            raise TrainSetupError(f"no run of regime {regime!r} of this model in {out} to resume{others}", "resume")
    else:
        folder = Path(resume)
    if not (folder / "config.json").is_file():
        raise TrainSetupError(f"{folder} is not a run folder (it has no config.json)", "resume")
    return trainer_class, folder


def train(
    program_or_path: Program | str | Path,
    regime: str | None = None,
    *,
    out: str | Path = "runs",
    device: str = "cpu",
    max_steps: int | None = None,
    resume: str | Path | bool | None = None,
    seed: int | None = None,
    tensorboard: bool = False,
    progress: bool = False,
):
    """Run a `train` block in this process, as `mspec train` does, and return its
    `modelspec.train.loop.RunResult` (folder, step, epoch, last metrics, best, why it stopped).

    `regime` may be left out when the spec declares one; `resume=True` continues the latest
    run of the regime in `out` for this model, `resume=FOLDER` that run. A `distributed` regime
    runs in one process here (`mspec train --nproc N` starts several).

    Raises SpecError (the spec has mistakes), TrainSetupError (the arguments) and
    `modelspec.train.loop.TrainError` (what the run finds: data that does not fit, a NaN loss, ...).
    """
    program = _program(program_or_path)
    name = pick_regime(program, program.files[0] if program.files else "the spec", regime)
    check_device(device)
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise TrainSetupError(f"max_steps must be a whole number of steps, at least 1 (got {max_steps!r})", "max_steps")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise TrainSetupError(f"seed must be a whole number, at least 0 (got {seed!r})", "seed")
    out = Path(out)
    trainer_class, resume_folder = plan_run(program, name, out, resume)

    from modelspec.train.loop import Options

    options = Options(
        out=out,
        device=device,
        max_steps=max_steps,
        seed=seed,
        resume=resume_folder,
        tensorboard=tensorboard,
        progress=progress,
    )
    sources = getattr(program, "_sources", None)  # the texts the run folder keeps a copy of
    texts = dict(sources.texts) if sources is not None else None
    return trainer_class(program, program.trains[name], options, sources=texts).run()
