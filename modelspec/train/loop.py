"""Running a `train` regime: the supervised loop, its run folder, resume.

    run = Trainer(program, regime, options).run()

One step: take `accumulate` micro-batches, divide each micro-batch's loss
sum by the count of the whole window (so 8 micro-batches of 1 equal one
batch of 8, token-level losses with padding included; a window of one takes
the loss's mean as torch computes it), backward, clip, optimizer and
schedule step. Evaluation, checkpoints, best tracking and
early stopping follow the regime. Every step's state can be checkpointed,
and a resumed run continues exactly where the checkpoint left off: same
weights, same RNG, same next batch.

The run folder `runs/<regime>-<timestamp>/` holds the spec sources used,
`config.json`, `metrics.jsonl`, `checkpoints/` and (for gan regimes)
`samples/`.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from modelspec.fileio import write_atomically
from modelspec.semantics.values import spec_literal
from modelspec.train import checkpoint as ckpt
from modelspec.train import distributed
from modelspec.train.config import TrainSpec
from modelspec.train.distributed import Context, DistributedError


class TrainError(Exception):
    """A problem found before or during training; the message says what and where."""


def torch_build():
    """The torch backend's `build`, found in the plugin registry like any backend (`modelspec.api.build`)."""
    from modelspec.api import backend

    try:
        return backend("torch").build
    except ValueError as exc:  # no torch backend registered: a plugin problem, said by the message
        raise TrainError(f"training needs the torch backend: {exc}") from None


@dataclass
class Options:
    out: Path = Path("runs")
    device: str = "cpu"
    max_steps: int | None = None  # stop after this many optimizer steps (whatever the regime says)
    seed: int | None = None  # overrides the regime's seed
    resume: Path | None = None  # a run folder to continue
    tensorboard: bool = False
    progress: bool = True  # a live progress bar (when the output is a terminal)
    log_every: int = 10  # steps between metrics.jsonl lines within an epoch
    checkpoint_hook: Any = None  # tests: called between the phases of each checkpoint write


@dataclass
class RunResult:
    folder: Path
    step: int
    epoch: int
    metrics: dict[str, float] = field(default_factory=dict)  # the last evaluation
    best: dict[str, Any] | None = None
    stopped: str = ""  # why it ended: "done", "max_steps", "early_stop"
    main: bool = True  # False in the processes of a distributed run but the first (they report nothing)


def new_run_folder(out: Path, regime: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = out / f"{regime}-{stamp}"
    k = 1
    while folder.exists():
        folder = out / f"{regime}-{stamp}-{k}"
        k += 1
    folder.mkdir(parents=True)
    return folder


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def latest_run(out: Path, regime: str, spec_hash: str) -> Path | None:
    """The run of `regime` in `out` that `--resume` without a RUN continues: among the runs of
    this very model (the IR hash in config.json), the one whose newest checkpoint was saved last
    (the time recorded in its state.json, then its step, then the folder name: the order depends
    on the files' contents only, not on modification times a copy or a `touch` changes). Runs
    with a checkpoint come before runs without one."""
    ranked = []
    for folder in out.glob(f"{glob.escape(regime)}-*"):
        config = _read_json(folder / "config.json")
        if not isinstance(config, dict) or config.get("spec_hash") != spec_hash:
            continue
        if not isinstance(config.get("regime"), dict) or config["regime"].get("name") != regime:
            continue  # `small-2-…` is a run of regime `small-2`, not of `small`
        found = ckpt.checkpoints(folder / "checkpoints")
        meta = _read_json(found[-1] / "state.json") if found else None
        meta = meta if isinstance(meta, dict) else {}
        saved, step = meta.get("saved"), meta.get("step")
        saved = float(saved) if isinstance(saved, int | float) and math.isfinite(saved) else 0.0
        step = step if isinstance(step, int) else 0
        ranked.append(((bool(found), saved, step, folder.name), folder))
    return max(ranked)[1] if ranked else None


def _write_json(path: Path, data: Any) -> None:
    write_atomically(path, json.dumps(data, indent=2))


def _copy_sources(sources: dict[str, str], folder: Path) -> None:
    """The exact text of every spec file a run used, numbered in load order."""
    folder.mkdir()
    for i, (file, text) in enumerate(sources.items()):
        (folder / f"{i:02d}-{Path(file).name}").write_text(text, encoding="utf-8")


_LENGTH = ("epochs", "steps")  # the regime's length: the one setting a resumed run may change (grow)


def _spec_text(value: Any) -> str:
    """A resolved regime setting as a spec writes it: `sgd(lr=0.05, momentum=0.9)`, `32`, `true`
    (a component's arguments left unset, None, are left out)."""
    if isinstance(value, dict):
        if isinstance(value.get("args"), dict) and "kind" in value and "name" in value:  # a component
            args = [f"{k}={_spec_text(v)}" for k, v in value["args"].items() if v is not None]
            return f"{value['name']}({', '.join([*value.get('inputs', []), *args])})"
        return "{" + ", ".join(f"{k}: {_spec_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_spec_text(v) for v in value) + "]"
    return "none" if value is None else spec_literal(value)


def _setting(key: str, value: Any) -> str:
    return f"no {key}" if value is None else f"{key} {_spec_text(value)}"


def _length_text(regime: dict) -> str:
    return f"steps {regime['steps']}" if regime.get("steps") else f"epochs {regime.get('epochs')}"


def _narrowed(old: Any, new: Any) -> tuple[Any, Any]:
    """Two calls of the same component with only the arguments that differ (`sgd(lr=0.05)` and
    `sgd(lr=0.1)`: the message shows what changed); anything else as it is."""
    if not all(isinstance(v, dict) and isinstance(v.get("args"), dict) for v in (old, new)):
        return old, new
    if {k: v for k, v in old.items() if k != "args"} != {k: v for k, v in new.items() if k != "args"}:
        return old, new
    changed = [k for k in {**old["args"], **new["args"]} if old["args"].get(k) != new["args"].get(k)]
    return tuple({**v, "args": {k: v["args"][k] for k in changed if k in v["args"]}} for v in (old, new))


def _with_current_defaults(regime: dict) -> dict:
    """A run's recorded regime with the settings and component arguments it lacks filled in
    with their defaults as installed now: one added since (`digits(channels=1)`) is no
    difference. What no longer parses is kept as recorded (and so differs)."""
    from modelspec.train.config import ComponentSpec

    def filled(value: Any) -> Any:
        if isinstance(value, dict):
            if isinstance(value.get("args"), dict) and isinstance(value.get("kind"), str) and "name" in value:
                try:
                    spec = ComponentSpec(kind=value["kind"], name=value["name"], args=value["args"])
                    return {**value, "args": {**spec.parsed().model_dump(mode="json"), **value["args"]}}
                except Exception:  # unknown now, or its arguments no longer parse (a plugin's too)
                    return value
            return {k: filled(v) for k, v in value.items()}
        if isinstance(value, list):
            return [filled(v) for v in value]
        return value

    try:  # only what is missing is filled in: what was recorded is compared as recorded
        regime = {**TrainSpec.model_validate(regime).settings(), **regime}
    except ValueError:  # pydantic's ValidationError: a setting no longer known, kept as recorded
        pass
    return filled(regime)


def _follows_length(spec, rates: list[float], old: int, new: int) -> bool:
    """Whether schedule `spec` gives other rates in a run of `new` steps than in one of `old`
    steps: both built on throwaway optimizers with `rates` and compared step by step over the
    longer run (a checkpoint restores the old one's state, so such a schedule cannot be extended)."""
    from modelspec.train.builders import make_schedule

    runs = []
    for total in (old, new):
        optimizer = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "lr": lr} for lr in rates])
        try:
            runs.append((optimizer, make_schedule(spec, optimizer, total)))
        except Exception:  # not buildable for one of the lengths (a plugin's too): it depends on it
            return True
    (short, short_schedule), (long, long_schedule) = runs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a schedule stepped without its optimizer stepping
        for _ in range(max(old, new)):
            if [g["lr"] for g in short.param_groups] != [g["lr"] for g in long.param_groups]:
                return True
            try:
                short_schedule.step()
                long_schedule.step()
            except Exception:  # e.g. onecycle stepped past the shorter run's end
                return True
    return False


@contextlib.contextmanager
def restoring(path: Path, what: str):
    """A failure to load `what` from checkpoint `path` (one that passed validation: its state
    does not fit this regime's objects) as a TrainError naming the checkpoint."""
    try:
        yield
    except ckpt.CheckpointError as exc:
        raise TrainError(f"cannot resume from {path}: {exc}") from None
    except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as exc:
        raise TrainError(
            f"cannot resume from {path}: its {what} does not fit this regime ({type(exc).__name__}: {exc})"
        ) from None


def summary_writer():
    """TensorBoard's SummaryWriter class, or a TrainError naming the package to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise TrainError("--tensorboard needs the `tensorboard` package: pip install tensorboard") from exc
    return SummaryWriter


class MetricsLog:
    """`metrics.jsonl`: one JSON object per line, appended. Lines reach the file at least every
    FLUSH_S seconds, at once for events (notes, errors, the end), and before a checkpoint records
    the log's size: a write per line is a system call (~1% of a small model's epoch for its three
    step lines), and lines a crash loses are those after the last checkpoint, which a resumed run
    writes again anyway."""

    FLUSH_S = 1.0

    def __init__(self, path: Path | None, tensorboard_dir: Path | None = None):
        """`path` None: a log that writes nothing (the processes of a distributed run but the first)."""
        self.path = path
        self.handle = open(path, "a", encoding="utf-8") if path is not None else None  # noqa: SIM115 - close()
        self.flushed = time.monotonic()
        self.writer = None
        if tensorboard_dir is not None:
            self.writer = summary_writer()(str(tensorboard_dir))

    def flush(self) -> None:
        if self.handle is not None and not self.handle.closed:
            self.handle.flush()
            self.flushed = time.monotonic()

    def size(self) -> int | None:
        """Bytes written so far, all of them in the file."""
        if self.handle is None:
            return None
        self.flush()
        return self.handle.tell()

    def set_aside(self) -> Path | None:
        """Rename the log written so far to `metrics.jsonl.before-restart` (or `…-2`, … when taken)
        and go on in an empty one: a run that starts over keeps its earlier history. Returns where
        it went (None: there was nothing to keep)."""
        if self.handle is None or not self.path.stat().st_size:
            return None
        self.handle.close()
        target, k = self.path.with_name(f"{self.path.name}.before-restart"), 2
        while target.exists():
            target, k = self.path.with_name(f"{self.path.name}.before-restart-{k}"), k + 1
        self.path.rename(target)
        self.handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        return target

    def truncate(self, size: int | None) -> None:
        """Keep the first `size` bytes (None or 0: none), atomically: the lines a resumed run
        writes again (those after its checkpoint) are not left twice in the file."""
        if self.handle is None:
            return
        self.handle.close()
        data = self.path.read_bytes()
        keep = data[: size or 0]
        if len(keep) < len(data):
            write_atomically(self.path, keep)
        self.handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, record: dict[str, Any]) -> None:
        if self.handle is None:
            return
        self.handle.write(json.dumps(record) + "\n")
        if "event" in record or time.monotonic() - self.flushed >= self.FLUSH_S:
            self.flush()
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, int | float) and key not in ("step", "epoch"):
                    self.writer.add_scalar(key, value, record.get("step", 0))

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
        if self.writer is not None:
            self.writer.close()


LOW_OR_DOUBLE = ("float64", "bfloat16", "float16")  # float inputs declared in another dtype than float32


def build_dtype(model_ir) -> str | None:
    """The dtype to build a model in: the one its floating-point inputs declare when that is not
    float32 (`float64[B, 4]`: the data comes in float64, and so must the weights that take it);
    None (torch's float32) otherwise, and when they declare several."""
    declared = {t.dtype for t in model_ir.graph.inputs.values() if t.dtype in LOW_OR_DOUBLE + ("float", "float32")}
    (only,) = declared if len(declared) == 1 else (None,)
    return only if only in LOW_OR_DOUBLE else None


def _outputs(model_ir, result) -> dict[str, torch.Tensor]:
    if isinstance(result, dict):
        return result
    return {next(iter(model_ir.graph.outputs)): result}


class Trainer:
    """The supervised regime (one model, one optimizer)."""

    def __init__(self, program, regime: TrainSpec, options: Options, sources: dict[str, str] | None = None):
        self.program = program
        self.regime = regime
        self.options = options
        self.sources = sources or {}
        self.device = torch.device(options.device)
        self.seed = options.seed if options.seed is not None else (regime.seed or 0)
        self.dist = Context()  # one process unless `distributed ddp`/`fsdp` runs under torchrun (prepare)
        self.sharded = False  # under fsdp: self.model's parameters are shards (prepare)
        self.aliases: dict[str, str] = {}  # tied parameters' names -> the first name (fsdp's checkpoints)
        # The plain step's losses: read at each step on the CPU, else left on the device (see plain_step)
        self.read_each_step = self.device.type == "cpu"
        # (step, loss, count, clipped gradients' norm or None) not read back yet
        self.pending: list[tuple[int, torch.Tensor, Any, torch.Tensor | None]] = []
        self.last_loss: float | None = None
        self.settled_at = time.perf_counter()

    # ---- set-up ------------------------------------------------------------------------

    def model_name(self) -> str:
        ref = self.regime.model
        if not ref.args and not ref.kwargs:
            return ref.name
        parts = [str(v) for v in ref.args] + [f"{k}={spec_literal(v)}" for k, v in ref.kwargs.items()]
        return f"{ref.name}({', '.join(parts)})"

    def spec_folder(self) -> Path | None:
        """Where the regime's relative paths start: the folder of the file declaring its `train`
        block (None: a spec given as text, without a file; paths then start at the working folder)."""
        file = self.regime.file
        return Path(file).parent if file and Path(file).parent.is_dir() else None

    def expected_spec_hash(self) -> str | None:
        """The IR hash the run's checkpoints carry, before anything is built (None: no such model)."""
        model = self.program.models.get(self.model_name())
        return ckpt.ir_hash(model) if model is not None else None

    def join_processes(self) -> None:
        """`distributed ddp` or `fsdp` under torchrun: join the process group (a launch the regime
        does not declare is refused rather than run other than declared)."""
        strategy = self.regime.distributed.name if self.regime.distributed is not None else None
        try:
            self.dist, self.dist_note = distributed.setup(strategy, self.device)
        except DistributedError as exc:
            raise TrainError(str(exc)) from None
        if self.dist.active and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)

    def loaders(self, epoch: int = 0, skip_batches: int = 0):
        """This process's training loader of `epoch` (its share of each batch) and the validation loader."""
        return self.make_loaders(
            self.data, self.data_args, self.seed, epoch, skip_batches, rank=self.dist.rank, world=self.dist.world
        )

    def prepare(self) -> None:
        self.join_processes()
        from modelspec.train.builders import (
            layer_kinds,
            make_loss,
            make_metric,
            make_optimizer,
            make_regularizer,
            make_schedule,
        )
        from modelspec.train.data import (
            DataError,
            check_vocabulary,
            field_values,
            input_bounds,
            make_data,
            make_loaders,
        )

        build = torch_build()

        name = self.model_name()
        if name not in self.program.models:
            raise TrainError(f"model `{name}` of regime `{self.regime.name}` was not built by the checker")
        self.model_ir = self.program.models[name]
        # looked up once: a small model's step is ~0.5 ms
        self.input_names = tuple(self.model_ir.graph.inputs)
        self.output_name = next(iter(self.model_ir.graph.outputs))
        self.spec_hash = ckpt.ir_hash(self.model_ir)
        base = self.spec_folder()
        try:
            bounds = input_bounds(self.model_ir.graph)
            self.data = make_data(
                self.regime.data, dict(self.model_ir.graph.inputs), self.seed, base=base, bounds=bounds
            )
        except DataError as exc:
            raise TrainError(str(exc)) from None
        self.data_args = self.regime.data.parsed()
        self.make_loaders = make_loaders
        self.model = build(self.program, name, device=self.device, seed=self.seed, dtype=build_dtype(self.model_ir))
        if self.data.tokenizer is not None:
            vocab = next((m.num_embeddings for m in self.model.modules() if isinstance(m, torch.nn.Embedding)), None)
            if vocab is not None:
                try:
                    check_vocabulary(self.data, vocab)
                except DataError as exc:
                    raise TrainError(str(exc)) from None
        if self.regime.init:
            self.load_init(base)
        self.freeze()
        # The module that runs forward passes: DDP's wrapper averages gradients across processes;
        # self.model (its state_dict keys) is what checkpoints hold. FSDP shards self.model in place.
        self.runner = self.model
        self.sharded = self.dist.strategy == "fsdp"
        self.aliases = distributed.tied_names(self.model) if self.sharded else {}
        if self.sharded:
            distributed.shard(self.model)
        elif self.dist.active:
            self.runner = torch.nn.parallel.DistributedDataParallel(self.model)
        self.training_mode = False  # whether the model is in train mode with its frozen layers in eval mode
        parameters = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self.trainable = [p for _, p in parameters]  # what clip_grad clips
        try:
            self.optimizer = make_optimizer(self.regime.optimizer, parameters, kinds=layer_kinds(self.model))
        except ValueError as exc:  # nothing left to train (freeze), `fused=true` where it cannot run
            frozen = " (`freeze` leaves none)" if self.regime.freeze and not parameters else ""
            raise TrainError(f"optimizer `{self.regime.optimizer.name}`: {exc}{frozen}") from None
        try:
            self.batches_per_epoch = len(self.loaders()[0])
        except DataError as exc:
            raise TrainError(str(exc)) from None
        self.steps_per_epoch = max(1, self.batches_per_epoch // self.regime.accumulate)
        # The schedule spans the regime's whole length, so a run stopped by --max-steps
        # and resumed follows the same learning rates as one that never stopped.
        self.regime_steps = self.regime.steps or self.regime.epochs * self.steps_per_epoch
        self.total_steps = self.regime_steps
        if self.options.max_steps is not None:
            self.total_steps = min(self.total_steps, self.options.max_steps)
        try:
            # Without a declared schedule the rate stays constant: no scheduler at all (torch's
            # wraps optimizer.step, a cost per step for nothing)
            self.schedule = None
            if self.regime.schedule is not None:
                self.schedule = make_schedule(self.regime.schedule, self.optimizer, self.regime_steps)
        except ValueError as exc:
            raise TrainError(f"schedule: {exc}") from None
        self.loss = make_loss(self.regime.loss)
        if self.loss.inputs and self.loss.inputs[1] in self.data.fields:
            target = self.loss.inputs[1]
            splits = [d for d in (self.data.train, self.data.val) if d is not None]
            self.loss.criterion.know_targets([field_values(d, target) for d in splits])
        self.metrics = [make_metric(m, loss=self.loss) for m in self.regime.metrics]
        # `train_<metric>` is measured over the training steps between evaluations (the window) only
        # when `best` or `early_stop` watches one: it costs a metric update per training batch.
        watched = {w.metric for w in (self.regime.best, self.regime.early_stop) if w is not None}
        self.train_metrics = [
            make_metric(m, loss=self.loss)
            for m, made in zip(self.regime.metrics, self.metrics, strict=True)
            if f"train_{made.name}" in watched
        ]
        self.regularizers = [make_regularizer(r) for r in self.regime.regularization]
        self.teacher = self.make_teacher(base) if self.regime.distill is not None else None
        self.autocast = self.regime.precision != "fp32"
        # A window of one micro-batch in one process takes the loss's mean at once (`Loss.mean`);
        # distillation mixes in the teacher's term and train_<metric>s read the loss sum: they sum.
        self.single_batch_mean = not self.dist.active and self.teacher is None and not self.train_metrics
        self.amp_dtype = torch.bfloat16 if self.regime.precision == "bf16" else torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type) if self.regime.precision == "fp16" else None
        if self.regime.precision == "fp16" and self.device.type != "cuda":
            raise TrainError("precision fp16 needs a CUDA device; on the CPU use bf16")
        self.place_data()

    def place_data(self) -> None:
        """On a CUDA device, data sets held in tensors move there whole when they take at most a
        quarter of its free memory and batches are fetched in this process (`workers=0`): batches
        are then gathered on the device instead of copied there at every step (for the digits MLP
        a 200 KB copy per step of ~0.2 ms of kernels). Called last in `prepare`, after everything
        that reads the data on the CPU."""
        from modelspec.train.data import on_device

        if self.device.type != "cuda" or getattr(self.data_args, "workers", 0):
            return
        free, _ = torch.cuda.mem_get_info(self.device)
        placed = on_device(self.data, self.device, free // 4)
        if placed is not None:
            self.data = placed

    def make_teacher(self, base: Path | None):
        """The distillation teacher: its spec's model with its trained weights, frozen."""
        build = torch_build()

        distill = self.regime.distill
        ref = distill.teacher
        name = ref.name
        if ref.args or ref.kwargs:
            parts = [str(v) for v in ref.args] + [f"{k}={spec_literal(v)}" for k, v in ref.kwargs.items()]
            name = f"{ref.name}({', '.join(parts)})"
        if name not in self.program.models:
            raise TrainError(f"distill: teacher model `{name}` was not built by the checker")
        self.teacher_ir = self.program.models[name]
        teacher = build(self.program, name, device=self.device, seed=self.seed, dtype=build_dtype(self.teacher_ir))
        path = Path(distill.checkpoint)
        if not path.is_absolute() and base is not None and not path.exists():
            path = base / path
        try:
            missing, unexpected = ckpt.load_weights(path, teacher)
        except ckpt.CheckpointError as exc:
            raise TrainError(f"distill: {exc}") from None
        if missing or unexpected:
            raise TrainError(f"distill: {path} does not fit teacher `{name}`")
        teacher.eval().requires_grad_(False)
        return teacher

    def distillation(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]):
        """(sum, count) of the soft-target term: T² · KL(teacher/T ‖ student/T) per row."""
        distill = self.regime.distill
        name = self.regime.loss.inputs[0]
        with torch.no_grad():
            inputs = [batch[n] for n in self.teacher_ir.graph.inputs]
            teacher = _outputs(self.teacher_ir, self.teacher(*inputs))[name]
        t = distill.temperature
        student = torch.log_softmax(outputs[name].float() / t, dim=-1)
        target = torch.log_softmax(teacher.float() / t, dim=-1)
        kl = torch.nn.functional.kl_div(student, target, log_target=True, reduction="sum") * t * t
        rows = student.numel() // student.shape[-1]
        return kl, rows

    def load_init(self, base: Path | None) -> None:
        path = Path(self.regime.init)
        if not path.is_absolute() and base is not None and not path.exists():
            path = base / path
        try:
            # a new head's weights are not read: it may have another shape (other classes)
            missing, unexpected = ckpt.load_weights(path, self.model, skip=self.regime.reinit)
        except ckpt.CheckpointError as exc:
            raise TrainError(f"init: {exc}") from None
        fresh = tuple(self.regime.reinit)
        missing = [k for k in missing if not any(k == f or k.startswith(f + ".") for f in fresh)]
        if missing or unexpected:
            raise TrainError(
                f"init: {path} does not fit model `{self.model_ir.name}`"
                + (f"; missing {', '.join(missing[:5])}" if missing else "")
                + (f"; unexpected {', '.join(unexpected[:5])}" if unexpected else "")
            )
        for name in self.regime.reinit:  # a new head: fresh parameters, from the seed
            module = self._submodule(name, "reinit")
            torch.manual_seed(self.seed)
            for m in module.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()

    def _submodule(self, name: str, setting: str) -> torch.nn.Module:
        try:
            return self.model.get_submodule(name)
        except AttributeError:
            known = ", ".join(n for n, _ in self.model.named_children())
            raise TrainError(
                f"{setting}: model `{self.model_ir.name}` has no layer `{name}` (layers: {known})"
            ) from None

    def freeze(self) -> None:
        """Frozen layers get no gradients and stay in eval mode while training: their
        parameters and their buffers (batch-norm statistics) stay exactly as loaded."""
        self.frozen = [self._submodule(name, "freeze") for name in self.regime.freeze]
        for module in self.frozen:
            module.requires_grad_(False)

    # ---- the run folder ------------------------------------------------------------------

    def open_folder(self) -> None:
        """The run folder: process 0 makes (or checks) it and tells the others its path; the others
        write nothing in it."""
        error, folder = None, None
        if self.dist.is_main:
            try:
                self.open_main_folder()
                folder = str(self.folder)
            except TrainError as exc:
                error = str(exc)
        error, folder = self.dist.broadcast((error, folder))  # every process stops, or none
        if error is not None:
            raise TrainError(error)
        if not self.dist.is_main:
            self.folder = Path(folder)
            self.checkpoints = self.folder / "checkpoints"
            self.log = MetricsLog(None)

    def open_main_folder(self) -> None:
        if self.options.tensorboard:
            summary_writer()  # checked before the run folder is made or touched: a refusal leaves nothing behind
        if self.options.resume is not None:
            self.folder = Path(self.options.resume)
            try:
                config = json.loads((self.folder / "config.json").read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                reason = "it has no config.json" if isinstance(exc, FileNotFoundError) else f"its config.json: {exc}"
                raise TrainError(f"{self.folder} is not a run folder to resume ({reason})") from None
            if not isinstance(config, dict) or "spec_hash" not in config:
                raise TrainError(f"{self.folder} is not a run folder to resume (its config.json has no spec_hash)")
            if config.get("spec_hash") != self.spec_hash:
                raise TrainError(
                    f"{self.folder} is a run of another model (its spec differs from this one); "
                    "nothing in it was changed"
                )
            self.longer = self.check_resumable(config)
        else:
            self.folder = new_run_folder(self.options.out, self.regime.name)
            _copy_sources(self.sources, self.folder / "spec")
            _write_json(
                self.folder / "config.json",
                {
                    "regime": self.regime.settings(),
                    "model": self.model_ir.name,
                    "spec_hash": self.spec_hash,
                    "seed": self.seed,
                    "device": str(self.device),
                    "max_steps": self.options.max_steps,
                    "files": list(self.sources),
                    "torch": torch.__version__,
                },
            )
        self.checkpoints = self.folder / "checkpoints"
        ckpt.clean_temporary(self.checkpoints)
        best, old = self.folder / "best", self.folder / ".best.old"
        if old.is_dir() and not best.exists():
            old.rename(best)  # a crash while the best copy was being replaced
        for leftover in (self.folder / ".best.tmp", old):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
        board = self.folder / "tensorboard" if self.options.tensorboard else None
        self.log = MetricsLog(self.folder / "metrics.jsonl", board)

    def check_resumable(self, config: dict) -> tuple[dict, int, int] | None:
        """Refuse to resume the run of `config` under another regime than the one it was trained
        with, or another seed (the data order): a TrainError naming what differs, before anything
        in the run folder changes. Only the length may change, and only grow (training longer),
        when no schedule depends on it. Returns (config, its steps, the spec's steps) when the
        length changes (`record_longer` records it once the checkpoint is restored), else None."""
        run = config.get("regime")
        if not isinstance(run, dict):
            raise TrainError(f"{self.folder} is not a run folder to resume (its config.json has no regime)")
        now = self.regime.settings()
        run = _with_current_defaults(run)
        extended = config.get("extended")
        last = extended[-1] if isinstance(extended, list) and extended else None
        copy = last.get("spec", "spec") if isinstance(last, dict) else "spec"
        fix = (
            f"resume with the spec the run used (its copy is in {self.folder / copy}) or start a new run; "
            "nothing in the run folder was changed"
        )
        # The seed is compared as the run used it (--seed overrides the regime's), the length below.
        differing = [k for k in {**run, **now} if k not in ("seed", *_LENGTH) and run.get(k) != now.get(k)]
        if differing:
            differing += [k for k in _LENGTH if run.get(k) != now.get(k)]  # all that differs, named at once
            pairs = [_narrowed(run.get(k), now.get(k)) for k in differing]
            was = ", ".join(_setting(k, old) for k, (old, _) in zip(differing, pairs))
            says = ", ".join(_setting(k, new) for k, (_, new) in zip(differing, pairs))
            raise TrainError(f"{self.folder} was trained with {was}; the spec now says {says}: {fix}")
        seed = config.get("seed")
        if isinstance(seed, int) and seed != self.seed:
            why = "the data order would change"
            if self.options.seed is not None:
                raise TrainError(
                    f"{self.folder} was trained with seed {seed}, not --seed {self.seed}: {why}; "
                    f"resume without --seed or with --seed {seed}"
                )
            raise TrainError(
                f"{self.folder} was trained with seed {seed}, but this resume would use seed {self.seed} "
                f"(from the spec): {why}; resume with --seed {seed}"
            )
        if all(run.get(k) == now.get(k) for k in _LENGTH):
            return None
        steps, epochs = run.get("steps"), run.get("epochs")
        old = steps or (epochs * self.steps_per_epoch if isinstance(epochs, int) else None)
        new = self.regime_steps
        lengths = f"{_length_text(run)} ({old} steps); the spec now says {_length_text(now)} ({new} steps)"
        if not isinstance(old, int) or new < old:
            raise TrainError(
                f"{self.folder} was trained for {lengths}: a run cannot be resumed shorter (to stop it "
                f"earlier, use --max-steps); {fix}"
            )
        schedule = self.schedule_following_length(old, new)
        if schedule is not None:
            raise TrainError(
                f"{self.folder} was trained for {lengths}, but its schedule {schedule} spans the "
                "regime's whole length, so a longer run has other rates from the start (a run can "
                f"be made longer only when no schedule depends on its length): {fix}"
            )
        return config, old, new

    def schedule_following_length(self, old: int, new: int) -> str | None:
        """The first declared schedule whose rates in a run of `new` steps are not those in a run
        of `old` steps (as the spec writes it), or None."""
        optimizers = getattr(self, "optimizers", None) or {"main": self.optimizer}  # a gan's: one per role
        declared = self.regime.schedule
        for role, optimizer in optimizers.items():
            spec = declared.get(role) if isinstance(declared, dict) else declared
            rates = [group.get("initial_lr", group["lr"]) for group in optimizer.param_groups]
            if spec is not None and _follows_length(spec, rates, old, new):
                return _spec_text(json.loads(spec.model_dump_json()))
        return None

    def record_longer(self, config: dict, old: int, new: int) -> None:
        """A run resumed to train longer: config.json takes the new length, keeping the old one in
        its `extended` list, and the spec used now is copied beside the first one."""
        extended = config.get("extended") if isinstance(config.get("extended"), list) else []
        copy, k = self.folder / f"spec-extended-{len(extended) + 1}", len(extended) + 2
        while copy.exists():
            copy, k = self.folder / f"spec-extended-{k}", k + 1
        _copy_sources(self.sources, copy)
        run, now = config["regime"], self.regime.settings()
        lengths = {k: now.get(k) for k in _LENGTH}
        entry = {"from": {k: run.get(k) for k in _LENGTH}, "to": lengths, "steps": [old, new], "spec": copy.name}
        config = {**config, "regime": {**run, **lengths}, "extended": [*extended, entry]}
        _write_json(self.folder / "config.json", config)
        self.note(
            f"training longer: {_length_text(run)} -> {_length_text(now)} ({old} -> {new} steps); "
            f"config.json records it, and the spec used now is copied to {copy}"
        )

    # ---- state ------------------------------------------------------------------------------

    def state(self, step: int, epoch: int, batch: int) -> ckpt.TrainingState:
        return ckpt.TrainingState(
            step=step,
            epoch=epoch,
            batch=batch,
            optimizers={"main": self.optimizer_state()},
            schedulers={"main": self.schedule.state_dict()} if self.schedule is not None else {},
            rng=ckpt.capture_rng(),
            extra={
                "best": self.best,
                "stale": self.stale,
                "stop_value": self.last_stop_value,
                "metrics": self.last_metrics,
                "window": self.window_state(),
            },
        )

    def optimizer_state(self) -> dict[str, Any]:
        """The optimizer's state_dict; under fsdp its full state gathered to process 0 (every
        process calls this), parameters named by their dotted names."""
        if self.sharded:
            return distributed.full_optimizer_state(self.model, self.optimizer)
        return self.optimizer.state_dict()

    def save(self, step: int, epoch: int, batch: int) -> Path:
        # Every process calls this at the same steps (under fsdp the tensors are gathered from all)
        self.settle()  # the window's losses, and no checkpoint after a non-finite one
        state = self.state(step, epoch, batch)
        key = (step, epoch, batch, json.dumps(state.extra, sort_keys=True, default=str), state.rng["torch"].tolist())
        if self.saved is not None and self.saved[0] == key:
            return self.saved[1]  # this very state is on disk already (an evaluation's best, then the due one)
        state.log_bytes = self.log.size()
        weights = distributed.full_weights(self.model, self.aliases) if self.sharded else self.model.state_dict()
        bad = next((n for n, p in weights.items() if p.is_floating_point() and not torch.isfinite(p).all()), None)
        if self.sharded:  # only process 0 holds the full weights: all follow its finding
            bad = self.dist.broadcast(bad)
        if bad is not None:
            self.stop_with(TrainError(f"the weights are not finite after step {step} (`{bad}`)"))
        if not self.dist.is_main:  # process 0 writes the checkpoints; the others hold the same state
            self.saved = (key, self.checkpoints / f"{ckpt.PREFIX}{step:08d}")
            return self.saved[1]
        tokenizer = getattr(getattr(self, "data", None), "tokenizer", None)
        metadata = {"modelspec.tokenizer": tokenizer.to_json()} if tokenizer is not None else None
        path = ckpt.save(
            self.checkpoints,
            weights if self.sharded else self.model,
            state,
            self.spec_hash,
            hook=self.options.checkpoint_hook,
            metadata=metadata,
        )
        # The new checkpoint is protected too: `prune` keeps the highest steps, which need not include it.
        # Without periodic checkpoints the only ones are the best's and the end's: the newest is kept
        # (what a resume starts from), not every improvement of `best` (best/ holds its copy).
        keep = self.regime.keep or (1 if self.regime.checkpoint is None else None)
        ckpt.prune(self.checkpoints, keep, protect={path, self.best_path} - {None})
        self.saved = (key, path)
        return path

    def restore(self) -> tuple[int, int, int, list[str]]:
        path, refused = ckpt.latest_valid(self.checkpoints, self.spec_hash)
        if path is None:
            return 0, 0, 0, refused
        if self.sharded:  # every process reads the full tensors and keeps its shard
            weights: dict[str, torch.Tensor] = {}
            with restoring(path, "weights or optimizer state"):
                state = ckpt.load(path, weights.update, self.spec_hash)
                distributed.load_full_state(self.model, weights, self.aliases, self.optimizer, state.optimizers["main"])
        else:
            with restoring(path, "weights"):
                state = ckpt.load(path, self.model, self.spec_hash)
            with restoring(path, "optimizer state"):
                load_optimizer_state(self.optimizer, state.optimizers["main"])
        if self.schedule is not None and "main" in state.schedulers:
            with restoring(path, "schedule state"):
                self.schedule.load_state_dict(state.schedulers["main"])
        with restoring(path, "training state"):
            ckpt.restore_rng(state.rng)
            self.best = state.extra.get("best")
            self.stale = state.extra.get("stale", 0)
            self.last_stop_value = state.extra.get("stop_value")
            self.last_metrics = state.extra.get("metrics", {})
            self.load_window(state.extra.get("window"))
        self.restored_log_bytes = state.log_bytes
        return state.step, state.epoch, state.batch, refused

    # ---- the training window: train_loss and train_<metric> since the last evaluation ----------

    def reset_window(self) -> None:
        self.window_loss_sum, self.window_count = 0.0, 0.0
        for metric in getattr(self, "train_metrics", []):
            metric.reset()

    def window_state(self) -> dict[str, Any]:
        return {
            "loss_sum": self.window_loss_sum,
            "count": self.window_count,
            "metrics": [metric_state(m) for m in getattr(self, "train_metrics", [])],
        }

    def load_window(self, state: dict[str, Any] | None) -> None:
        self.reset_window()
        if not state:
            return
        self.window_loss_sum, self.window_count = state["loss_sum"], state["count"]
        for metric, values in zip(getattr(self, "train_metrics", []), state["metrics"], strict=True):
            load_metric_state(metric, values)

    def window_results(self) -> dict[str, float]:
        """`train_loss` (the mean loss of the window's steps, weighted by their counts) and the
        watched `train_<metric>`s over the same batches; then a new window starts."""
        if not self.window_count:
            return {}
        results = {"train_loss": self.window_loss_sum / self.window_count}
        for metric in self.train_metrics:
            if self.dist.active:  # the processes' counts add up (hits and counted; loss sums and counts)
                state = metric_state(metric)
                load_metric_state(metric, dict(zip(state, self.dist.all_sum(list(state.values())), strict=True)))
            results[f"train_{metric.name}"] = metric.compute()
        self.reset_window()
        return results

    # ---- steps ----------------------------------------------------------------------------------

    def learning_rate(self) -> float:
        """The rate of the optimizer's first parameter group: the one its schedule set last."""
        return self.optimizer.param_groups[0]["lr"]

    def forward(self, batch: dict[str, torch.Tensor], module=None) -> dict[str, torch.Tensor]:
        inputs = [batch[name] for name in self.input_names]
        module = module or self.runner
        if self.autocast:
            with torch.autocast(self.device.type, dtype=self.amp_dtype):
                result = module(*inputs)
        else:
            result = module(*inputs)
        return result if isinstance(result, dict) else {self.output_name: result}

    def batches_on_device(self) -> bool:
        """Whether batches come on the training device already (the CPU, or data moved there whole)."""
        return self.device.type == "cpu" or self.data.device is not None

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.batches_on_device():
            return batch
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def enter_training_mode(self) -> None:
        """Train mode, frozen layers excepted; done once after each evaluation, not per step
        (train() walks every module)."""
        self.model.train()
        for module in self.frozen:
            module.eval()
        self.training_mode = True

    def plain_step(self):
        """`train_step` for a window of one batch, as a function made at the start of each epoch,
        where the regime is only a model, a loss on its output and the batch, an optimizer (with or
        without a schedule), gradient clipping or none and bf16 autocast or none: one process, no
        accumulation, regularization, fp16 scaler, teacher or `train_` metric. A small model's step is ~0.7 ms;
        train_step's generality (its checks, lookups and calls) costs ~5% of it. None where it
        does not apply; same computation, same results as train_step (tests/train/test_loop.py
        compares). Subclasses whose step is another (gan) return None.

        With `read_each_step` (on the CPU, where reading a number back costs nothing) each step
        reads its loss (and clipped gradients' norm), and a non-finite one stops the run before
        the optimizer steps. Otherwise (an accelerator: a read would wait for the device at every
        step) they stay on the device in `pending` until `settle` reads them all at once, when a
        line is logged, before an evaluation or checkpoint and at the end; a non-finite one then
        stops the run naming its step, and no checkpoint after it is written."""
        regime, graph = self.regime, self.model_ir.graph
        if (
            self.dist.active
            or regime.accumulate != 1
            or self.scaler is not None
            or self.regularizers
            or not self.single_batch_mean
            or len(graph.inputs) != 1
            or len(graph.outputs) != 1
            or self.loss.inputs[:1] != (self.output_name,)
            or self.loss.inputs[1] not in self.data.fields
        ):
            return None
        (input_name,) = self.input_names
        target_name = self.loss.inputs[1]
        runner, mean_of, criterion = self.runner, self.loss.criterion.mean, self.loss.criterion
        optimizer_step, zero_grad = self.optimizer.step, self.optimizer.zero_grad
        schedule_step = self.schedule.step if self.schedule is not None else None
        to_device = None if self.batches_on_device() else self.to_device
        autocast = torch.autocast(self.device.type, dtype=self.amp_dtype) if self.autocast else None
        read_now, pending = self.read_each_step, self.pending
        clip, trainable, clip_norm = regime.clip_grad, self.trainable, torch.nn.utils.clip_grad_norm_
        isfinite, float32, Tensor = math.isfinite, torch.float32, torch.Tensor

        def step(batch: dict[str, torch.Tensor], number: int) -> tuple[float | None, int]:
            if not self.training_mode:
                self.enter_training_mode()
            if to_device is not None:
                batch = to_device(batch)
            x, target = batch[input_name], batch[target_name]
            if autocast is None:
                prediction = runner(x)
            else:
                with autocast:
                    prediction = runner(x)
            loss, count = mean_of(prediction, target)
            if isinstance(count, Tensor):
                # Targets that may be ignore_index: the count is read (a wait on an accelerator), as
                # train_step does. Dividing the sum by it on the device instead differs from torch's
                # mean in the last bits under label smoothing.
                count = count.item()
            if not count:  # nothing counted: the summing path's loss of 0, no gradient
                loss = criterion(prediction, target)[0]
            if loss.dtype != float32:
                loss = loss.float()
            loss.backward()
            norm = clip_norm(trainable, clip) if clip is not None else None
            if read_now:
                mean = loss.item()
                if not isfinite(mean):
                    zero_grad(set_to_none=True)
                    raise TrainError(f"the loss is {mean} at step {number + 1}")
                if norm is not None and not isfinite(norm.item()):
                    zero_grad(set_to_none=True)
                    raise TrainError(f"the gradients are not finite at step {number + 1} (the loss is {mean})")
            else:
                pending.append((number + 1, loss.detach(), count, norm))
                mean = None
            optimizer_step()
            zero_grad(set_to_none=True)
            if schedule_step is not None:
                schedule_step()
            if read_now:
                count = count or 1
                self.window_loss_sum += mean * count
                self.window_count += count
            return mean, x.shape[0]

        return step

    def settle(self) -> float | None:
        """Read back the losses of the steps the plain step left on the device (one transfer for
        all of them), add them to the window, and return the last one (None: no step yet). A
        non-finite loss stops the run, naming its step."""
        if self.pending:
            values = torch.stack([loss for _, loss, _, _ in self.pending]).tolist()
            norms = [norm for *_, norm in self.pending]
            if norms[0] is not None:  # clipped: every step has its norm
                norms = torch.stack(norms).tolist()
            for (step, _, count, _), value, norm in zip(self.pending, values, norms, strict=True):
                problem = None
                if not math.isfinite(value):
                    problem = f"the loss is {value} at step {step}"
                elif norm is not None and not math.isfinite(norm):
                    problem = f"the gradients are not finite at step {step} (the loss is {value})"
                if problem:
                    self.pending.clear()
                    self.optimizer.zero_grad(set_to_none=True)
                    self.stop_with(TrainError(problem))
                count = count or 1  # a number: the plain step reads a count held on the device
                self.window_loss_sum += value * count
                self.window_count += count
            self.pending.clear()
            self.last_loss = values[-1]
        self.settled_at = time.perf_counter()
        return self.last_loss

    def train_step(self, window: list[dict[str, torch.Tensor]], step: int) -> tuple[float, int]:
        """One optimizer step over `window` (the accumulated micro-batches); its loss and samples."""
        if not self.training_mode:  # first step, or after an evaluation
            self.enter_training_mode()
        if len(window) == 1 and self.single_batch_mean:
            mean, count, samples = self.backward_one(window[0])
        else:
            mean, count, samples = self.backward_window(window)
        if self.regularizers:
            penalty = sum(r(self.model) for r in self.regularizers)
            penalty.backward()
            mean += penalty.item()
        if not math.isfinite(mean):
            self.optimizer.zero_grad(set_to_none=True)
            raise TrainError(f"the loss is {mean} at step {step + 1}")
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.regime.clip_grad is not None:
            norm = torch.nn.utils.clip_grad_norm_(self.trainable, self.regime.clip_grad)
            # The norm is computed anyway: an overflow in the backward pass stops the run before the
            # optimizer makes the weights inf or NaN (with fp16's scaler the step is skipped instead).
            # Without clip_grad nothing is checked per step: the next step's loss is not finite and
            # stops the run, and `save` writes no checkpoint of non-finite weights.
            if self.scaler is None and not math.isfinite(distributed.whole(norm).item()):
                self.optimizer.zero_grad(set_to_none=True)
                raise TrainError(f"the gradients are not finite at step {step + 1} (the loss is {mean})")
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.schedule is not None:
            self.schedule.step()
        self.window_loss_sum += mean * count
        self.window_count += count
        return mean, samples

    def backward_one(self, batch: dict[str, torch.Tensor]) -> tuple[float, float, int]:
        """A window of one micro-batch in one process: the loss's mean as torch computes it (one
        op, not a sum and a division). Returns (mean, count, samples)."""
        batch = self.to_device(batch)
        outputs = self.forward(batch)
        loss, count = self.loss.mean(outputs, batch)
        count = float(count)
        # nothing counted: the mean is nan; the sum is 0, the summing path's loss (no gradient)
        if not count:
            loss = self.loss(outputs, batch)[0]
        if loss.dtype != torch.float32:
            loss = loss.float()
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()
        return loss.item(), max(count, 1.0), next(iter(batch.values())).shape[0]

    def backward_window(self, window: list[dict[str, torch.Tensor]]) -> tuple[float, float, int]:
        """Backward passes over the window's micro-batches, each one's loss sum divided by the count
        of the whole window (of all processes under DDP). Returns (mean, count, samples)."""
        total = global_count = None
        if self.dist.active:
            # DDP averages the processes' gradients, so each divides its loss sum by the count of
            # the global window over the number of processes: the step one process would take.
            (global_count,) = self.dist.all_sum([float(sum(self.loss.count(b) for b in window))])
            global_count = max(global_count, 1.0)
            total = global_count / self.dist.world
        elif len(window) > 1:
            total = max(float(sum(self.loss.count(b) for b in window)), 1.0)
        loss_sum = 0.0
        samples = 0
        for i, batch in enumerate(window):
            batch = self.to_device(batch)
            # gradients are averaged across processes once per window, at its last micro-batch
            skip_sync = self.dist.active and i < len(window) - 1
            with self.gradient_sync_skipped() if skip_sync else contextlib.nullcontext():
                outputs = self.forward(batch)
                part_sum, part_count = self.loss(outputs, batch)
                if total is None:  # a Python number: dividing by it adds no tensor op
                    total = max(float(part_count), 1.0)
                loss = part_sum.float() / total
                if self.teacher is not None:
                    # (1 - w) of the hard loss and w of the teacher's soft targets (Hinton et al. 2015)
                    weight = self.regime.distill.weight
                    soft_sum, rows = self.distillation(outputs, batch)
                    loss = (1 - weight) * loss + weight * soft_sum / (rows * len(window))
                    part_sum = part_sum.detach() * (1 - weight) + weight * soft_sum.detach() * float(total) / (
                        rows * len(window)
                    )
                if self.scaler is not None:
                    self.scaler.scale(loss).backward()
                else:
                    loss.backward()
            loss_sum += part_sum.item()
            samples += next(iter(batch.values())).shape[0]
            if self.train_metrics:
                with torch.no_grad():
                    for metric in self.train_metrics:
                        metric.update(outputs, batch, part_sum.detach(), part_count)
        if self.dist.active:
            (loss_sum,) = self.dist.all_sum([loss_sum])  # the logged loss is the global window's
        else:
            global_count = float(total)
        return loss_sum / global_count, global_count, samples

    def gradient_sync_skipped(self):
        """A context in which backward passes accumulate gradients without averaging them across
        the processes."""
        if self.sharded:
            return distributed.gradient_sync_skipped(self.model)
        return self.runner.no_sync()

    @torch.no_grad()
    def evaluate(self, loader) -> dict[str, float]:
        self.model.eval()
        self.training_mode = False
        for metric in self.metrics:
            metric.reset()
        loss_sum, count = 0.0, 0.0
        for batch in loader:
            batch = self.to_device(batch)
            outputs = self.forward(batch, self.model)
            part_sum, part_count = self.loss(outputs, batch)
            loss_sum += float(part_sum)
            count += float(part_count)
            for metric in self.metrics:
                metric.update(outputs, batch, part_sum, part_count)
        if self.sharded:  # a forward without backward leaves the root's parameters gathered: free them
            self.model.reshard()
        results = {"val_loss": loss_sum / max(count, 1.0)}
        for metric in self.metrics:
            results[f"val_{metric.name}"] = metric.compute()
        return results

    # ---- the loop -------------------------------------------------------------------------------

    def start(self) -> tuple[int, int, int]:
        """Set up the run (model, data, optimizer, run folder; the checkpoint when resuming)
        and return where training starts: (step, epoch, batches of that epoch consumed)."""
        self.prepare()
        self.best: dict[str, Any] | None = None
        self.best_path: Path | None = None
        self.stale = 0
        self.last_stop_value: float | None = None
        self.last_metrics: dict[str, float] = {}
        self.saved: tuple[tuple, Path] | None = None
        self.reset_window()
        self.longer = None  # (config, steps, steps now) when a resume trains the run longer
        self.open_folder()
        step, epoch, position = 0, 0, 0
        if self.options.resume is not None:
            self.restored_log_bytes = None
            step, epoch, position, refused = self.restore()
            self.dist.barrier()  # every process has read the checkpoints before process 0 moves any
            kept = []
            if step:
                # What the interrupted run logged after this checkpoint, the resumed run logs again.
                if self.restored_log_bytes is not None:  # (checkpoints before this change: keep all)
                    self.log.truncate(self.restored_log_bytes)
                self.note(f"resumed from checkpoint step {step} (epoch {epoch}, batch {position})")
            else:
                kept = self.set_aside_earlier_records()
            for reason in refused:
                self.note(f"skipped checkpoint: {reason}")
            if refused and self.dist.is_main:
                # Out of the way of the new checkpoints' numbering and pruning; never deleted.
                newer = [p for p in ckpt.checkpoints(self.checkpoints) if ckpt.step_of(p) > step]
                if ckpt.set_aside(self.checkpoints, newer):
                    kept.append(f"the refused checkpoints are moved to {self.checkpoints / ckpt.REFUSED}")
            if step == 0:
                start = "no valid checkpoint" if refused else "no checkpoint to resume from"
                self.note("; ".join([f"{start}: starting from the beginning", *kept]))
            elif kept:
                self.note("; ".join(kept))
            if self.longer is not None:
                self.record_longer(*self.longer)
        if getattr(self, "dist_note", None):
            self.note(self.dist_note)  # after the resume's cut of metrics.jsonl, which would drop it
        if step == 0:
            torch.manual_seed(self.seed)
        return step, epoch, position

    def set_aside_earlier_records(self) -> list[str]:
        """A resume that starts over keeps what the run wrote before: metrics.jsonl and best/ are
        renamed (`….before-restart`), not overwritten. Returns what went where, for the note."""
        kept = []
        log = self.log.set_aside()
        if log is not None:
            kept.append(f"the earlier metrics.jsonl is kept as {log}")
        best = self.folder / "best"
        if self.dist.is_main and best.is_dir():
            target, k = self.folder / "best.before-restart", 2
            while target.exists():
                target, k = self.folder / f"best.before-restart-{k}", k + 1
            best.rename(target)
            kept.append(f"the earlier best/ as {target}")
        return kept

    def run(self) -> RunResult:
        try:
            result = self.run_all()
            self.dist.barrier()  # the others wait for process 0's last checkpoint before leaving the group
            return result
        finally:
            if getattr(self, "log", None) is not None:  # lines still buffered (a stop by a signal, an error)
                self.log.flush()
            # DDP's reducer holds the process group: release it before the group is destroyed
            self.runner = getattr(self, "model", None)
            self.dist.shutdown()

    def run_all(self) -> RunResult:
        step, epoch, position = self.start()
        stopped = "done"
        started = time.perf_counter()
        with Progress(self, enabled=self.options.progress, quiet=not self.dist.is_main) as progress:
            while step < self.total_steps and stopped == "done":
                step, epoch, position, stopped = self.run_epoch(step, epoch, position, progress)
        regime_total = self.regime.steps or self.regime.epochs * self.steps_per_epoch
        if stopped == "done" and step < regime_total:
            stopped = "max_steps"
        self.save(step, epoch, position)
        self.log.write(
            {"step": step, "epoch": epoch, "event": "end", "stopped": stopped, "seconds": time.perf_counter() - started}
        )
        self.log.close()
        return RunResult(self.folder, step, epoch, dict(self.last_metrics), self.best, stopped, self.dist.is_main)

    def run_epoch(self, step: int, epoch: int, position: int, progress) -> tuple[int, int, int, str]:
        """Train from batch `position` of `epoch` to its end (or to the last step)."""
        train_loader, val_loader = self.loaders(epoch, position)
        # What each step checks, worked out once per epoch (a small model's step is ~0.5 ms)
        accumulate, log_every, total = self.regime.accumulate, self.options.log_every, self.total_steps
        evaluate_every = _steps_between(self.regime.evaluate) if self.evaluates(val_loader) else 0
        checkpoint_every = _steps_between(self.regime.checkpoint)
        live = progress.bar is not None
        plain_step = self.plain_step()
        window: list = []
        seen, tick = 0, time.perf_counter()
        for batch in train_loader:
            position += 1
            try:
                if plain_step is not None:
                    loss, samples = plain_step(batch, step)
                    del batch  # freed before the next batch is fetched
                else:
                    window.append(batch)
                    del batch  # the window holds it: freed after its step, before the next batch is fetched
                    if len(window) < accumulate:
                        continue
                    loss, samples = self.train_step(window, step)
                    window = []
            except TrainError as exc:
                self.stop_with(exc)
            step += 1
            seen += samples
            if live:
                shown = loss
                if shown is None:  # left on the device: the bar shows the last one read, twice a second
                    shown = self.settle() if time.perf_counter() - self.settled_at >= 0.5 else self.last_loss
                progress.advance(step, epoch, shown, self.learning_rate(), samples)
            if step % log_every == 0 or step == total:
                if loss is None:  # this step's own loss (settle reads every step still on the device)
                    loss = self.settle()
                now = time.perf_counter()
                rate = seen / max(now - tick, 1e-9)
                lr = self.learning_rate()
                self.log.write({"step": step, "epoch": epoch, "loss": loss, "lr": lr, "samples_per_s": rate})
                seen, tick = 0, now
            if evaluate_every and step % evaluate_every == 0:
                if self.after_evaluation(step, epoch, position, val_loader, progress):
                    return step, epoch, position, "early_stop"
            if checkpoint_every and step % checkpoint_every == 0:
                self.save(step, epoch, position)
            if step >= total and position < self.batches_per_epoch:
                return step, epoch, position, "done"  # stopped mid-epoch; at its end, the epoch closes below
        # The epoch is over (a last window shorter than `accumulate` is dropped).
        epoch, position = epoch + 1, 0
        evaluate = self.regime.evaluate
        if self.evaluates(val_loader) and (evaluate is None or self.due(evaluate, epoch=epoch)):
            if self.after_evaluation(step, epoch, 0, val_loader, progress):
                return step, epoch, position, "early_stop"
        if self.due(self.regime.checkpoint, epoch=epoch):
            self.save(step, epoch, 0)
        return step, epoch, position, "done"

    def stop_with(self, exc: TrainError):
        """Stop the run on a NaN or infinite value: log it, name the checkpoint to go back to."""
        path, _ = ckpt.latest_valid(self.checkpoints, self.spec_hash)
        where = f"the last good checkpoint is {path}" if path else "no checkpoint was written before it"
        text = f"{exc}: training stopped; {where}"
        self.log.write({"event": "error", "text": text})
        self.log.close()
        raise TrainError(text) from None

    def due(self, every, *, step: int | None = None, epoch: int | None = None) -> bool:
        if every is None:
            return False
        if every.unit == "steps":
            return step is not None and step % every.n == 0
        return epoch is not None and epoch % every.n == 0

    def evaluates(self, val_loader) -> bool:
        """Whether there is anything to evaluate: validation data, or a watched `train_` metric."""
        watched = [w.metric for w in (self.regime.best, self.regime.early_stop) if w is not None]
        return val_loader is not None or any(m.startswith("train_") for m in watched)

    def after_evaluation(self, step: int, epoch: int, batch_index: int, val_loader, progress) -> bool:
        """Evaluate, log, track the best, decide early stopping (True: stop)."""
        self.settle()
        results = self.window_results()
        if val_loader is not None:
            results.update(self.evaluate(val_loader))
        self.last_metrics = results
        self.log.write({"step": step, "epoch": epoch, "lr": self.learning_rate(), **results})
        progress.evaluated(results)
        improved_best = False
        best = self.regime.best
        if best is not None and best.metric in results:
            value = results[best.metric]
            improved_best = self.best is None or (
                value < self.best["value"] if best.mode == "min" else value > self.best["value"]
            )
            if improved_best:
                self.best = {"metric": best.metric, "value": value, "step": step}
        stopping = False
        stop = self.regime.early_stop
        if stop is not None and stop.metric in results:
            value = results[stop.metric]
            reference = self.last_stop_value
            improved = reference is None or (
                value < reference - stop.min_delta if stop.mode == "min" else value > reference + stop.min_delta
            )
            if improved:
                self.last_stop_value = value
                self.stale = 0
            else:
                self.stale += 1
                stopping = self.stale >= stop.patience
        # Saved after the early-stop bookkeeping, so that the checkpoint resumes it exactly.
        if improved_best:
            self._mark_best(self.save(step, epoch, batch_index))
        if stopping:
            self.note(f"early stop at step {step}: `{stop.metric}` did not improve for {stop.patience} evaluations")
        return stopping

    def _mark_best(self, path: Path) -> None:
        """Copy checkpoint `path` to `best/`, replacing the previous best without a moment of none."""
        self.best_path = path
        if not self.dist.is_main:
            return
        best, tmp, old = self.folder / "best", self.folder / ".best.tmp", self.folder / ".best.old"
        for leftover in (tmp, old):
            if leftover.is_symlink():
                leftover.unlink()
            elif leftover.exists():
                shutil.rmtree(leftover)
        shutil.copytree(path, tmp)
        if best.exists():
            best.rename(old)
        tmp.rename(best)
        shutil.rmtree(old, ignore_errors=True)
        self.best_path = path

    def note(self, text: str) -> None:
        if not self.dist.is_main:
            return
        self.log.write({"event": "note", "text": text})
        from rich.console import Console
        from rich.markup import escape

        Console(stderr=True, highlight=False, soft_wrap=True).print(f"[yellow]note:[/] {escape(text)}")


class Progress:
    """A live rich progress bar on a terminal; a line per epoch otherwise."""

    def __init__(self, trainer: Trainer, enabled: bool, quiet: bool = False):
        from rich.console import Console

        self.trainer = trainer
        self.console = Console(stderr=True)
        self.quiet = quiet  # prints nothing (the processes of a distributed run but the first)
        self.enabled = enabled and self.console.is_terminal and not quiet
        self.bar = None
        self.last_epoch = -1
        self.rate = 0.0  # samples per second, over the last half second or more of steps
        self.counted, self.since = 0, time.perf_counter()
        self.latest = ""  # the last evaluation's results, shown in the bar

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            self.bar = Bar(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("step {task.completed}/{task.total}"),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
            )
            self.bar.__enter__()
            self.task = self.bar.add_task(self.trainer.regime.name, total=self.trainer.total_steps, status="")
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def advance(self, step: int, epoch: int, loss: float | None, lr: float, samples: int) -> None:
        if self.bar is None:
            return
        now = time.perf_counter()
        self.counted += samples
        if now - self.since >= 0.5:
            self.rate, self.counted, self.since = self.counted / (now - self.since), 0, now
        rate = f" {self.rate:,.0f} samples/s" if self.rate else ""
        shown = f" loss {loss:.4f}" if loss is not None else ""  # None: none read back yet
        status = f"epoch {epoch}{shown} lr {lr:.2e}{rate}{self.latest}"
        self.bar.update(self.task, completed=step, status=status)

    def evaluated(self, results: dict[str, float]) -> None:
        if self.quiet:
            return
        text = "  ".join(f"{k} {v:.4f}" for k, v in results.items())
        if self.bar is not None:
            self.bar.console.print(f"  evaluation: {text}")
            self.latest = "".join(f" {k} {v:.4f}" for k, v in results.items() if k.startswith("val_"))
            self.since = time.perf_counter()  # the evaluation's time is no training throughput
        else:  # a plain line (rich's rendering costs a small model's step or two)
            print(f"{self.trainer.regime.name}: {text}", file=sys.stderr, flush=True)


IMPLEMENTATION = ("fused", "foreach")  # how an optimizer computes its step, not what it computes


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """`optimizer.load_state_dict(state)`, keeping the implementation chosen for this run (torch
    would take the saved one: a CPU run's fused adagrad resumed on CUDA, where torch has none)."""
    chosen = [{key: group[key] for key in IMPLEMENTATION if key in group} for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, keys in zip(optimizer.param_groups, chosen, strict=True):
        group.update(keys)


def metric_state(metric) -> dict[str, Any]:
    """A metric's accumulated numbers (tensors as Python numbers, exact for counts and float64 sums)."""
    state = {}
    for key, value in vars(metric).items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            state[key] = value.item()
        elif isinstance(value, int | float) and not isinstance(value, bool):
            state[key] = value
    return state


def load_metric_state(metric, state: dict[str, Any]) -> None:
    for key, value in state.items():
        setattr(metric, key, value)


def _steps_between(every) -> int:
    """The steps between two events of an `every(steps=N)` setting; 0 for none or `every(epochs=N)`."""
    return every.n if every is not None and every.unit == "steps" else 0
