"""Train components: what a `train` block names, each described once.

    optimizer adamw(lr=3e-4, weight_decay=0.1, no_decay=[bias, norm])
    schedule  cosine(warmup=500)
    loss      cross_entropy(logits, label, label_smoothing=0.1)
    metrics   [accuracy, top_k(5)]
    data      digits(batch=64, split=0.8)
    regularization l2(1e-4)
    distributed ddp

A `Component` is the train-side counterpart of an `OpSpec`: a kind
("optimizer", "schedule", "loss", "metric", "dataset", "regularizer",
"distributed"), a name, and the pydantic model of its arguments. `mspec
check` validates a call against `Args`; the runtime reads the same fields.
How a call maps onto a component (see `modelspec.train.config`):

- a loss's leading positional arguments, up to `inputs` of them, are
  references to model outputs, model inputs or data fields;
- the remaining positional arguments fill `positional` in order;
- keyword arguments fill `Args` fields by name; unknown names are errors;
- a bare name (`loss bce`, `metrics accuracy`) is the call with no arguments.

Every component is registered through the `mspec_train_components` hook,
exactly as a plugin's would be. Nothing here imports torch: executing a
regime is the runtime's business.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from modelspec.hookspec import hookimpl
from modelspec.semantics.values import Ref

KINDS = ("optimizer", "schedule", "loss", "metric", "dataset", "regularizer", "distributed")


class ComponentArgs(BaseModel):
    """Base of every component's argument model: strict types (an int is
    accepted where a float is expected), no unknown fields, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class NoArgs(ComponentArgs):
    pass


def out_of_range(arg: str, message: str) -> PydanticCustomError:
    """Raise from a model validator for a constraint between arguments;
    `arg` names the argument the diagnostic points at."""
    return PydanticCustomError("out_of_range", message, {"arg": arg})


# ---- argument types --------------------------------------------------------------


def _name_to_str(value: Any) -> Any:
    return value.name if isinstance(value, Ref) else value


def _tuple_to_list(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _list_to_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


# A word written as a bare name or as a string: `tokenizer=char`, `tokenizer="char"`.
Word = Annotated[str, Field(min_length=1), BeforeValidator(_name_to_str)]
# A list of words, written `[bias, norm]` or `("bias", "norm")`.
Words = Annotated[list[Word], BeforeValidator(_tuple_to_list)]
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Path = Annotated[str, Field(min_length=1)]  # existence is checked when training starts
Split = Annotated[float, Field(gt=0, le=1)]  # share of the data for training; the rest validates
Decay = Annotated[float, Field(gt=0, le=1)]  # a multiplicative learning-rate decay
Beta = Annotated[float, Field(ge=0, lt=1)]
Betas = Annotated[tuple[Beta, Beta], BeforeValidator(_list_to_tuple)]
# Image pixels: `unit` in [0, 1], `signed` in [-1, 1] (for tanh generators),
# `standard` with mean 0 and std 1 over the training split.
ImageScale = Annotated[Literal["unit", "signed", "standard"], BeforeValidator(_name_to_str)]


# ---- the description of a component ----------------------------------------------


@dataclass(frozen=True)
class Component:
    kind: str  # one of KINDS (plugins may add more)
    name: str
    Args: type[ComponentArgs] = NoArgs
    summary: str = ""  # one line, shown by `mspec components` and the docs
    positional: tuple[str, ...] = ()  # argument names accepted by position, in order
    # loss: how many leading references it takes (prediction, target)
    inputs: int = 0
    # dataset: the fields a loss may reference (besides the model's inputs);
    # a tuple, or a function of the arguments
    fields: tuple[str, ...] | Callable[[Any], tuple[str, ...]] = ()
    # metric: whether a larger value is better (`best val_accuracy` maximises)
    higher_is_better: bool = True
    # optimizer: extra tensors kept per parameter, as a function of the arguments
    state: Callable[[Any], int] | None = None
    # the runtime: "module:function", imported only when training starts (so
    # `mspec check` never imports torch); see `modelspec.train.builders` for
    # what the function receives per kind. None: no runtime (yet).
    build: str | None = None

    def parse(self, args: ComponentArgs | Mapping[str, Any]) -> ComponentArgs:
        """The arguments as `Args`, from an `Args` or from their JSON form
        (`ComponentSpec.args`, where tuples have become lists)."""
        if isinstance(args, self.Args):
            return args
        return self.Args.model_validate(dict(args), strict=False)

    def state_tensors(self, args: ComponentArgs | Mapping[str, Any]) -> int:
        """Tensors an optimizer keeps per parameter (0 for other kinds); read
        by `mspec summary --training` to estimate optimizer memory."""
        return self.state(self.parse(args)) if self.state else 0

    def data_fields(self, args: ComponentArgs | Mapping[str, Any]) -> tuple[str, ...]:
        """The fields a dataset yields besides the model's inputs."""
        if callable(self.fields):
            return tuple(self.fields(self.parse(args)))
        return self.fields


# ---- optimizers ------------------------------------------------------------------


class OptimizerArgs(ComponentArgs):
    """Every optimizer also takes `no_decay`: patterns ("bias", "norm") matched
    against each parameter's dotted name and the kind of layer that holds it
    (`layernorm`, `batchnorm2d`, ...); the parameters they match form a group
    with weight_decay 0. Those torch has a fused kernel for take `fused`: unset,
    the fused kernel is used wherever it runs (see builders.fused_choice);
    `true` insists on it, `false` keeps torch's default implementation."""

    @model_validator(mode="after")
    def _no_decay_needs_decay(self):
        if self.no_decay and getattr(self, "weight_decay", 0) == 0:
            raise out_of_range("no_decay", "`no_decay` has no effect when `weight_decay` is 0")
        return self


class SGDArgs(OptimizerArgs):
    lr: PositiveFloat
    momentum: NonNegativeFloat = 0.0
    nesterov: bool = False
    weight_decay: NonNegativeFloat = 0.0
    dampening: NonNegativeFloat = 0.0
    no_decay: Words = Field(default_factory=list)
    fused: bool | None = None

    @model_validator(mode="after")
    def _nesterov(self):
        if self.nesterov and self.momentum == 0:
            raise out_of_range("nesterov", "`nesterov` needs `momentum` greater than 0")
        if self.nesterov and self.dampening != 0:
            raise out_of_range("nesterov", "`nesterov` needs `dampening` 0")
        return self


class AdamArgs(OptimizerArgs):
    lr: PositiveFloat = 1e-3
    betas: Betas = (0.9, 0.999)
    eps: PositiveFloat = 1e-8
    weight_decay: NonNegativeFloat = 0.0
    amsgrad: bool = False
    no_decay: Words = Field(default_factory=list)
    fused: bool | None = None


class AdamWArgs(AdamArgs):
    weight_decay: NonNegativeFloat = 0.01


class RMSpropArgs(OptimizerArgs):
    lr: PositiveFloat = 1e-2
    alpha: Beta = 0.99
    eps: PositiveFloat = 1e-8
    momentum: NonNegativeFloat = 0.0
    weight_decay: NonNegativeFloat = 0.0
    no_decay: Words = Field(default_factory=list)


class AdagradArgs(OptimizerArgs):
    lr: PositiveFloat = 1e-2
    lr_decay: NonNegativeFloat = 0.0
    weight_decay: NonNegativeFloat = 0.0
    eps: PositiveFloat = 1e-10
    no_decay: Words = Field(default_factory=list)
    fused: bool | None = None


def _runtime(kind: str, name: str, module: str = "builders") -> str:
    """The built-in runtime of a component: `<name>_<kind>` in `modelspec.train.<module>`."""
    return f"modelspec.train.{module}:{name}_{kind}"


def _optimizer(name: str, args: type[ComponentArgs], summary: str, state: Callable[[Any], int]) -> Component:
    return Component(
        "optimizer", name, args, summary, positional=("lr",), state=state, build=_runtime("optimizer", name)
    )


OPTIMIZERS = [
    _optimizer(
        "sgd", SGDArgs, "stochastic gradient descent, with optional (Nesterov) momentum", lambda a: int(a.momentum > 0)
    ),
    _optimizer("adam", AdamArgs, "Adam (Kingma & Ba, 2015)", lambda a: 2 + int(a.amsgrad)),
    _optimizer(
        "adamw", AdamWArgs, "Adam with decoupled weight decay (Loshchilov & Hutter, 2019)", lambda a: 2 + int(a.amsgrad)
    ),
    _optimizer("rmsprop", RMSpropArgs, "RMSprop", lambda a: 1 + int(a.momentum > 0)),
    _optimizer("adagrad", AdagradArgs, "Adagrad", lambda a: 1),
]


# ---- schedules: counts are optimizer steps -----------------------------------------


class StepArgs(ComponentArgs):
    step_size: PositiveInt
    gamma: Decay = 0.1


class MultiStepArgs(ComponentArgs):
    milestones: Annotated[list[PositiveInt], Field(min_length=1), BeforeValidator(_tuple_to_list)]
    gamma: Decay = 0.1

    @model_validator(mode="after")
    def _increasing(self):
        if any(b <= a for a, b in zip(self.milestones, self.milestones[1:])):
            raise out_of_range("milestones", "`milestones` must be strictly increasing")
        return self


class ExponentialArgs(ComponentArgs):
    gamma: Decay


class CosineArgs(ComponentArgs):
    total: PositiveInt | None = None  # None: the whole run
    warmup: NonNegativeInt = 0
    min_lr: NonNegativeFloat = 0.0

    @model_validator(mode="after")
    def _warmup_fits(self):
        if self.total is not None and self.warmup >= self.total:
            raise out_of_range("warmup", "`warmup` must be shorter than `total`")
        return self


class LinearWarmupArgs(ComponentArgs):
    steps: PositiveInt


class WarmRestartsArgs(ComponentArgs):
    t0: PositiveInt
    t_mult: PositiveInt = 1
    min_lr: NonNegativeFloat = 0.0


class OneCycleArgs(ComponentArgs):
    max_lr: PositiveFloat
    pct_start: Annotated[float, Field(gt=0, lt=1)] = 0.3


def _schedule(name: str, args: type[ComponentArgs], summary: str, positional: tuple[str, ...] = ()) -> Component:
    return Component("schedule", name, args, summary, positional=positional, build=_runtime("schedule", name))


SCHEDULES = [
    _schedule("constant", NoArgs, "keep the optimizer's learning rate"),
    _schedule("step", StepArgs, "multiply the rate by `gamma` every `step_size` steps", ("step_size",)),
    _schedule("multistep", MultiStepArgs, "multiply the rate by `gamma` at each milestone", ("milestones",)),
    _schedule("exponential", ExponentialArgs, "multiply the rate by `gamma` every step", ("gamma",)),
    _schedule("cosine", CosineArgs, "linear warm-up, then cosine decay to `min_lr`", ("total",)),
    _schedule("linear_warmup", LinearWarmupArgs, "ramp the rate up linearly over `steps`", ("steps",)),
    _schedule("warm_restarts", WarmRestartsArgs, "cosine annealing with warm restarts (SGDR)", ("t0",)),
    _schedule("onecycle", OneCycleArgs, "the one-cycle policy up to `max_lr`", ("max_lr",)),
]


# ---- losses ------------------------------------------------------------------------


class CrossEntropyArgs(ComponentArgs):
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0
    ignore_index: int = -100


class KLDivArgs(ComponentArgs):
    temperature: PositiveFloat = 1.0


def _loss(name: str, args: type[ComponentArgs], summary: str) -> Component:
    return Component("loss", name, args, summary, inputs=2, build=_runtime("loss", name))


LOSSES = [
    _loss("cross_entropy", CrossEntropyArgs, "cross-entropy of logits against class indices"),
    _loss("mse", NoArgs, "mean squared error"),
    _loss("l1", NoArgs, "mean absolute error"),
    _loss("bce", NoArgs, "binary cross-entropy of probabilities"),
    _loss("bce_with_logits", NoArgs, "binary cross-entropy of logits"),
    _loss("kl_div", KLDivArgs, "KL divergence between softened distributions"),
]


# ---- metrics -----------------------------------------------------------------------


class TopKArgs(ComponentArgs):
    k: PositiveInt = 5


METRICS = [
    Component(
        "metric", "accuracy", NoArgs, "share of predictions equal to the label", build=_runtime("metric", "accuracy")
    ),
    Component(
        "metric",
        "top_k",
        TopKArgs,
        "share of labels among the `k` best predictions",
        positional=("k",),
        build=_runtime("metric", "top_k"),
    ),
    Component(
        "metric",
        "perplexity",
        NoArgs,
        "exp of the mean cross-entropy",
        higher_is_better=False,
        build=_runtime("metric", "perplexity"),
    ),
]


# ---- datasets ----------------------------------------------------------------------


class DigitsArgs(ComponentArgs):
    batch: PositiveInt = 64
    split: Split = 0.8
    shuffle: bool = True
    size: PositiveInt = 8  # images are resized to size x size
    workers: NonNegativeInt = 0
    scale: ImageScale = "unit"
    channels: PositiveInt = 1  # 3: the grey image repeated, for models made for RGB images

    @model_validator(mode="after")
    def _channels(self):
        if self.channels not in (1, 3):
            raise out_of_range("channels", "`channels` must be 1 (grey) or 3 (the grey image repeated, as RGB)")
        return self


class SyntheticArgs(ComponentArgs):
    batch: PositiveInt = 32
    samples: PositiveInt = 1024
    split: Split = 0.8
    classes: PositiveInt = 10  # labels are uniform in [0, classes)
    vocab: PositiveInt = 100  # integer inputs are uniform in [0, vocab)
    workers: NonNegativeInt = 0

    @model_validator(mode="after")
    def _batch_fits(self):
        if self.batch > self.samples:
            raise out_of_range("batch", "`batch` cannot exceed `samples`")
        return self


class NpzArgs(ComponentArgs):
    path: Path
    batch: PositiveInt = 32
    x: Word = "x"  # array names inside the file
    y: Word = "y"
    split: Split = 0.8
    shuffle: bool = True
    workers: NonNegativeInt = 0


class NpyArgs(ComponentArgs):
    x_path: Path
    y_path: Path | None = None  # None: no labels (self-supervised)
    batch: PositiveInt = 32
    split: Split = 0.8
    shuffle: bool = True
    workers: NonNegativeInt = 0


class CsvArgs(ComponentArgs):
    path: Path
    label: Word = "label"  # the column holding the label
    batch: PositiveInt = 32
    split: Split = 0.8
    shuffle: bool = True
    workers: NonNegativeInt = 0


class ImageFolderArgs(ComponentArgs):
    path: Path
    size: PositiveInt
    batch: PositiveInt = 32
    split: Split = 0.8
    shuffle: bool = True
    channels: PositiveInt = 3
    scale: ImageScale = "unit"
    workers: NonNegativeInt = 0

    @model_validator(mode="after")
    def _channels(self):
        if self.channels not in (1, 3):
            raise out_of_range("channels", "`channels` must be 1 (grey) or 3 (RGB)")
        return self


class TextArgs(ComponentArgs):
    path: Path
    # char and byte are built in; tokenizers (a HuggingFace tokenizer.json) and tiktoken (a
    # .tiktoken BPE file) read `tokenizer_file` and need their optional package at run time
    tokenizer: Annotated[Literal["char", "byte", "tokenizers", "tiktoken"], BeforeValidator(_name_to_str)] = "char"
    tokenizer_file: Path | None = None
    block: PositiveInt = 128  # tokens per example
    batch: PositiveInt = 32
    split: Split = 0.9
    workers: NonNegativeInt = 0

    @model_validator(mode="after")
    def _tokenizer_file(self):
        if self.tokenizer in ("tokenizers", "tiktoken") and self.tokenizer_file is None:
            raise out_of_range("tokenizer", f"`tokenizer={self.tokenizer}` needs `tokenizer_file`, a local file")
        if self.tokenizer in ("char", "byte") and self.tokenizer_file is not None:
            raise out_of_range("tokenizer_file", f"`tokenizer={self.tokenizer}` reads no `tokenizer_file`")
        return self


LABEL = ("label",)


def _dataset(name: str, args: type[ComponentArgs], summary: str, **more) -> Component:
    # datasets read files and import numpy: their runtimes live with the loaders in data.py
    return Component("dataset", name, args, summary, build=_runtime("dataset", name, "data"), **more)


DATASETS = [
    _dataset("digits", DigitsArgs, "the 8x8 handwritten digits bundled with scikit-learn", fields=LABEL),
    _dataset("synthetic", SyntheticArgs, "random tensors shaped like the model's inputs", fields=LABEL),
    _dataset("npz", NpzArgs, "arrays `x` and `y` of a .npz file", positional=("path",), fields=LABEL),
    _dataset(
        "npy",
        NpyArgs,
        "inputs and (optionally) labels in .npy files",
        positional=("x_path", "y_path"),
        fields=lambda a: LABEL if a.y_path is not None else (),
    ),
    _dataset("csv", CsvArgs, "rows of a CSV file; one column is the label", positional=("path",), fields=LABEL),
    _dataset(
        "image_folder", ImageFolderArgs, "images in one folder per class", positional=("path", "size"), fields=LABEL
    ),
    _dataset(
        "text",
        TextArgs,
        "a text file cut into blocks; `target` is `tokens` shifted by one",
        positional=("path",),
        fields=("tokens", "target"),
    ),
]


# ---- regularizers and distribution -------------------------------------------------


class PenaltyArgs(ComponentArgs):
    weight: PositiveFloat


REGULARIZERS = [
    Component(
        "regularizer",
        "l1",
        PenaltyArgs,
        "adds `weight` * sum of |w| to the loss",
        positional=("weight",),
        build=_runtime("regularizer", "l1"),
    ),
    Component(
        "regularizer",
        "l2",
        PenaltyArgs,
        "adds `weight` * sum of w^2 to the loss",
        positional=("weight",),
        build=_runtime("regularizer", "l2"),
    ),
]

DISTRIBUTED = [
    Component("distributed", "ddp", NoArgs, "data-parallel: one full replica per process"),
    Component("distributed", "fsdp", NoArgs, "fully sharded data-parallel: parameters sharded across processes"),
]


BUILTIN_COMPONENTS = [*OPTIMIZERS, *SCHEDULES, *LOSSES, *METRICS, *DATASETS, *REGULARIZERS, *DISTRIBUTED]


@hookimpl
def mspec_train_components():
    return list(BUILTIN_COMPONENTS)
