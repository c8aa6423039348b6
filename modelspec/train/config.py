"""A `train` block, checked: its settings become a `TrainSpec`.

    train mlp_sgd {
        model     MLP(hidden=256)
        data      digits(batch=64, split=0.8)
        loss      cross_entropy(logits, label)
        optimizer sgd(lr=0.01, momentum=0.9)
        epochs    10
        metrics   [accuracy, top_k(3)]
        best      max(val_accuracy)
    }

`validate_train(decl, registry, resolve_model)` reads every setting, checks
each against its accepted forms (`SETTINGS`) and each component call
against the component's `Args`, then checks the settings against each other
and against the model (loss inputs, gan roles). It reports every mistake of
the block, one Diagnostic each, and returns a `TrainSpec` only when there is
none. Nothing is ignored: an unknown setting or argument is an error, and
every argument of a component ends up in the spec with its default filled in.

The `TrainSpec` is plain data (pydantic, JSON round-trip); the runtime
executes it. Counts in schedules are optimizer steps.

The settings (`SETTINGS` gives the accepted forms):

    model        MLP | MLP(256, classes=10)          resolved by the caller
    data         a dataset call, or its bare name     digits | digits(batch=64)
    loss         name(prediction, target, args...)    cross_entropy(logits, label);
                 a gan regime's loss takes no inputs: `loss bce`
    optimizer    an optimizer call; in a gan regime also one per role:
                 generator: adam(lr=2e-4), discriminator: adam(lr=1e-4)
    schedule     a schedule call, or one per role (gan)
    epochs|steps a positive int; exactly one of the two
    accumulate   a positive int (default 1)
    clip_grad    a positive number (max gradient norm)
    precision    fp32 | bf16 | fp16, bare or as a string (default fp32)
    metrics      accuracy | [accuracy, top_k(5)]
    evaluate     every(epochs=N) | every(steps=N)
    checkpoint   every(epochs=N) | every(steps=N)
    keep         a positive int: checkpoints kept (needs `checkpoint`)
    best         val_accuracy | max(val_accuracy) | min(val_loss)
    early_stop   early_stop(patience=5, metric=val_loss, mode=min, min_delta=0)
    samples      grid(8, 8, every=1)                   gan regimes only
    regularization  l2(1e-4) | [l1(1e-5), l2(1e-4)]
    seed         a non-negative int
    init         "path/to/checkpoint.pt"
    freeze       features | [features, "blocks.0"]
    reinit       head | [head]                        (needs `init`)
    distill      teacher(model=Big(), checkpoint="big.pt", temperature=1.0, weight=0.5)
    distributed  ddp | fsdp
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from modelspec.diagnostics import CompileError, Diagnostic, Label, Span, did_you_mean, error, suggestion
from modelspec.semantics.constants import evaluate_setting
from modelspec.semantics.values import CallValue, Ref, describe
from modelspec.syntax import ast
from modelspec.train.components import (
    Component,
    ComponentArgs,
    NonNegativeFloat,
    Path,
    PositiveFloat,
    PositiveInt,
    Word,
    out_of_range,
)

# ---- what the caller tells us about models -------------------------------------


@dataclass
class ModelInfo:
    """A model (or gan) as the train checker needs to know it."""

    name: str
    kind: str = "model"  # "model" or "gan"
    inputs: dict[str, str] = field(default_factory=dict)  # name -> type text, "float[B, 1, 28, 28]"
    outputs: dict[str, str] = field(default_factory=dict)  # name -> type text, "float[B, 10]"
    roles: dict[str, ModelInfo] = field(default_factory=dict)  # gan: "generator", "discriminator"


ResolveModel = Callable[[Ref | CallValue], ModelInfo]


# ---- the resolved regime -----------------------------------------------------------


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelRef(Spec):
    """A model by name, with its hyperparameter overrides: `MLP(256, classes=10)`."""

    name: str
    kind: Literal["model", "gan"] = "model"
    args: list[Any] = Field(default_factory=list)  # positional, as constants
    kwargs: dict[str, Any] = Field(default_factory=dict)


class ComponentSpec(Spec):
    """A validated component call; `args` holds every argument (defaults
    filled in) in JSON form. `parsed()` gives them back as the `Args` model."""

    kind: str
    name: str
    args: dict[str, Any] = Field(default_factory=dict)

    def component(self, registry=None) -> Component:
        if registry is None:
            from modelspec.plugins import registry as process_registry

            registry = process_registry()
        found = registry.component(self.kind, self.name)
        if found is None:
            raise KeyError(f"no {self.kind} `{self.name}` is registered")
        return found

    def parsed(self, registry=None) -> ComponentArgs:
        return self.component(registry).parse(self.args)


class LossSpec(ComponentSpec):
    inputs: list[str] = Field(default_factory=list)  # (prediction, target); empty in gan regimes


class Every(Spec):
    unit: Literal["epochs", "steps"]
    n: int = Field(ge=1)


class Best(Spec):
    metric: str  # "val_loss", "val_accuracy", "train_loss", ...
    mode: Literal["min", "max"]


class EarlyStop(Spec):
    patience: int = Field(ge=1)  # evaluations without improvement before stopping
    metric: str
    mode: Literal["min", "max"]
    min_delta: float = Field(ge=0)


class Samples(Spec):
    """A grid of generated samples, written every `every` epochs (gan regimes)."""

    rows: int = Field(ge=1)
    cols: int = Field(ge=1)
    every: int = Field(ge=1)


class Distill(Spec):
    teacher: ModelRef
    checkpoint: str
    temperature: float = Field(gt=0)
    weight: float = Field(ge=0, le=1)  # share of the distillation term in the loss


Precision = Literal["fp32", "bf16", "fp16"]


class TrainSpec(Spec):
    name: str
    model: ModelRef
    data: ComponentSpec
    loss: LossSpec
    optimizer: ComponentSpec | dict[str, ComponentSpec]  # a dict: one per gan role
    schedule: ComponentSpec | dict[str, ComponentSpec] | None = None
    epochs: int | None = Field(default=None, ge=1)
    steps: int | None = Field(default=None, ge=1)
    accumulate: int = Field(default=1, ge=1)
    clip_grad: float | None = Field(default=None, gt=0)
    precision: Precision = "fp32"
    metrics: list[ComponentSpec] = Field(default_factory=list)
    evaluate: Every | None = None  # None: at the end of every epoch
    checkpoint: Every | None = None  # None: no periodic checkpoints
    keep: int | None = Field(default=None, ge=1)  # checkpoints kept; None: all
    best: Best | None = None
    early_stop: EarlyStop | None = None
    samples: Samples | None = None
    regularization: list[ComponentSpec] = Field(default_factory=list)
    seed: int | None = Field(default=None, ge=0)
    init: str | None = None  # checkpoint to start from (fine-tuning)
    freeze: list[str] = Field(default_factory=list)  # node names kept fixed
    reinit: list[str] = Field(default_factory=list)  # node names given fresh parameters
    distill: Distill | None = None
    distributed: ComponentSpec | None = None
    # The spec file declaring the block: its relative paths (data, init, a teacher's checkpoint)
    # start at that file's folder. Not a setting: `settings()` leaves it out (config.json, resume).
    file: str | None = None

    def settings(self) -> dict[str, Any]:
        """The block's settings as JSON values: what config.json records and a resume compares."""
        values = json.loads(self.model_dump_json())
        values.pop("file", None)
        return values

    @model_validator(mode="after")
    def _one_duration(self):
        if (self.epochs is None) == (self.steps is None):
            raise ValueError("exactly one of `epochs` and `steps` is required")
        return self


# ---- the settings a train block accepts ---------------------------------------------

# key -> accepted forms (messages and docs read this)
SETTINGS: dict[str, str] = {
    "model": "a model, such as `MLP` or `MLP(hidden=256)`",
    "data": "a dataset, such as `digits(batch=64)`",
    "loss": "a loss, such as `cross_entropy(logits, label)`",
    "optimizer": "an optimizer, such as `adam(lr=1e-3)`, or `generator: adam(...), discriminator: adam(...)`",
    "schedule": "a schedule, such as `cosine(warmup=100)`, or one per gan role",
    "epochs": "a positive integer",
    "steps": "a positive integer",
    "accumulate": "a positive integer",
    "clip_grad": "a positive number",
    "precision": "`fp32`, `bf16` or `fp16`",
    "metrics": "a metric, such as `accuracy`, or a list `[accuracy, top_k(5)]`",
    "evaluate": "`every(epochs=N)` or `every(steps=N)`",
    "checkpoint": "`every(epochs=N)` or `every(steps=N)`",
    "keep": "a positive integer",
    "best": "a metric name, `min(name)` or `max(name)`, such as `max(val_accuracy)`",
    "early_stop": "`early_stop(patience=N, metric=name, mode=min|max)`",
    "samples": "`grid(rows, cols, every=N)`",
    "regularization": "a regularizer, such as `l2(1e-4)`, or a list of them",
    "seed": "a non-negative integer",
    "init": 'a checkpoint path as a string, such as `"runs/base/best.pt"`',
    "freeze": "node names: `features` or `[features, head]`",
    "reinit": "node names: `head` or `[head, classifier]`",
    "distill": '`teacher(model=Big(), checkpoint="big.pt", temperature=2.0, weight=0.5)`',
    "distributed": "`ddp` or `fsdp`",
}
REQUIRED = ("model", "data", "loss", "optimizer")
PER_ROLE = ("optimizer", "schedule")  # settings that may be given per gan role
PRECISIONS = ("fp32", "bf16", "fp16")

_EXAMPLES = {
    "model": "model MLP()",
    "data": "data digits(batch=64)",
    "loss": "loss cross_entropy(logits, label)",
    "optimizer": "optimizer adam(lr=1e-3)",
}
_KIND_PLURAL = {"loss": "losses", "distributed": "distributed strategies"}


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


# ---- calls inside settings that are not components ---------------------------------


class EveryArgs(ComponentArgs):
    epochs: PositiveInt | None = None
    steps: PositiveInt | None = None

    @model_validator(mode="after")
    def _one(self):
        if self.epochs is None and self.steps is None:
            raise PydanticCustomError("missing_argument", "`every` needs `epochs=N` or `steps=N`")
        if self.epochs is not None and self.steps is not None:
            raise PydanticCustomError("conflict", "`every` takes `epochs` or `steps`, not both", {"arg": "steps"})
        return self


class GridArgs(ComponentArgs):
    rows: PositiveInt
    cols: PositiveInt
    every: PositiveInt = 1  # epochs


class EarlyStopArgs(ComponentArgs):
    patience: PositiveInt
    metric: Word = "val_loss"
    mode: Word | None = None  # None: min for losses, else the metric's own direction
    min_delta: NonNegativeFloat = 0.0

    @model_validator(mode="after")
    def _mode(self):
        if self.mode not in (None, "min", "max"):
            raise out_of_range("mode", f"`mode` must be `min` or `max`, got `{self.mode}`")
        return self


class TeacherArgs(ComponentArgs):
    checkpoint: Path
    temperature: PositiveFloat = 1.0
    weight: float = Field(default=0.5, ge=0, le=1)


_EVERY = Component("setting", "every", EveryArgs)
_GRID = Component("setting", "grid", GridArgs, positional=("rows", "cols"))
_EARLY_STOP = Component("setting", "early_stop", EarlyStopArgs, positional=("patience",))
_TEACHER = Component("setting", "teacher", TeacherArgs, positional=("model", "checkpoint"))


# ---- pydantic errors -> diagnostics -------------------------------------------------

_TYPE_WORDS = {
    "float_type": "a number",
    "int_type": "an integer",
    "bool_type": "`true` or `false`",
    "string_type": "a string",
    "list_type": "a list",
    "tuple_type": "a tuple",
}
# error types raised by model validators -> (code, label)
_CUSTOM = {
    "out_of_range": ("E0208", "not allowed"),
    "conflict": ("E0406", "conflicts"),
    "missing_argument": ("E0204", "argument missing"),
}


def _arg_diagnostic(comp: Component, call: CallValue, err: dict, where: dict[str, Span]) -> Diagnostic:
    loc, kind, ctx = err["loc"], err["type"], err.get("ctx") or {}
    arg = loc[0] if loc and isinstance(loc[0], str) else ctx.get("arg")
    span = where.get(arg, call.span) if arg else call.span
    items = "".join(f"[{i}]" for i in loc[1:] if isinstance(i, int))
    what = f"argument `{arg}{items}` of `{comp.name}`"
    got = describe(err["input"])
    if kind == "missing":
        return error(
            "E0204",
            f"`{comp.name}` needs a value for `{arg}`",
            call.span,
            f"`{arg}` is missing",
            help=f"add `{arg}=...`",
        )
    if kind in _CUSTOM:
        code, label = _CUSTOM[kind]
        return error(code, err["msg"], span, label)
    if kind in _TYPE_WORDS:
        word = _TYPE_WORDS[kind]
        return error("E0207", f"{what} expects {word}, got {got}", span, f"expected {word}")
    if kind == "literal_error":
        expected = ctx.get("expected", "").replace("'", "`")
        return error("E0208", f"{what} must be {expected}, got {got}", span, "not allowed")
    if kind == "string_too_short":
        return error("E0208", f"{what} must not be empty", span, "empty")
    if kind in ("too_short", "too_long"):
        return error("E0208", f"{what} has the wrong length: {err['msg'][0].lower()}{err['msg'][1:]}", span, "here")
    message = err["msg"].replace("Input should be", "must be")
    message = message.replace("greater than or equal to", "at least").replace("less than or equal to", "at most")
    if message != err["msg"]:
        return error("E0208", f"{what} {message}, got {got}", span, "out of range")
    return error("E0207", f"{what} is invalid: {err['msg']}", span, "here")


def _as_call(value: Any) -> CallValue | None:
    if isinstance(value, CallValue):
        return value
    if isinstance(value, Ref):
        return CallValue(value.name, value.span, value.span)
    return None


def _span_of(value: Any, default: Span) -> Span:
    return value.span if isinstance(value, (Ref, CallValue)) else default


def _names(value: Any) -> str:
    return ", ".join(f"`{v}`" for v in value) if value else "nothing"


# ---- the checker ---------------------------------------------------------------------


@dataclass
class _Checked:
    """A component call, checked: `args` is None when they had mistakes (reported)."""

    component: Component
    args: ComponentArgs | None
    call: CallValue
    inputs: list[Ref] = field(default_factory=list)
    inputs_ok: bool = True  # every leading input was a name
    ok_so_far: bool = True  # no mistake while binding the arguments

    @property
    def ok(self) -> bool:
        return self.args is not None

    def spec(self) -> ComponentSpec:
        return ComponentSpec(kind=self.component.kind, name=self.component.name, args=self.args.model_dump(mode="json"))


class _Checker:
    def __init__(self, decl: ast.Train, registry, resolve_model: ResolveModel):
        self.decl = decl
        self.registry = registry
        self.resolve_model = resolve_model
        self.meant: set[str] = set()  # names that a misspelling was reported for
        self.diagnostics: list[Diagnostic] = []
        self.seen: dict[str, ast.Setting] = {}  # first occurrence of each key
        self.values: dict[str, Any] = {}  # key -> checked value, for keys that passed
        self.model: ModelInfo | None = None
        self.loss: _Checked | None = None  # kept even when its arguments fail, to check its inputs
        self.data: _Checked | None = None  # kept even when its arguments fail, for its fields
        self.metrics: list[_Checked] | None = None  # None when a metric is unknown
        # A model named here failed to check: its mistakes are reported already, so what depends on it
        # is skipped silently and no spec is built.
        self.skipped = False

    def report(self, code: str, message: str, span: Span | None, label: str = "", **extra) -> None:
        self.diagnostics.append(error(code, message, span, label, **extra))

    # -- reading one setting ----------------------------------------------------------

    def run(self) -> tuple[TrainSpec | None, list[Diagnostic]]:
        for setting in self.decl.settings:
            self.read(setting)
        self.check_together()
        if self.diagnostics or self.skipped:
            # in source order; the train block's name (missing settings) first
            return None, sorted(self.diagnostics, key=lambda d: d.span.start if d.span else -1)
        return self.build(), []

    def read(self, setting: ast.Setting) -> None:
        key = setting.key
        if key not in SETTINGS:
            # The key it was meant to be is not reported again as missing.
            self.meant.update(did_you_mean(key, SETTINGS))
            self.report(
                "E0401",
                f"unknown setting `{key}`",
                setting.key_span,
                "unknown setting",
                help=suggestion(key, SETTINGS),
                notes=[] if suggestion(key, SETTINGS) else [f"a train block takes: {', '.join(SETTINGS)}"],
            )
            return
        if key in self.seen:
            self.report(
                "E0408",
                f"setting `{key}` is given twice",
                setting.key_span,
                "again here",
                secondary=[Label(self.seen[key].key_span, "first given here")],
                help="keep one of them",
            )
            return
        self.seen[key] = setting
        if isinstance(setting.value, tuple):
            result = self.read_per_role(setting, setting.value)
        else:
            try:
                value = evaluate_setting(setting.value, {})
            except CompileError as exc:
                self.diagnostics.extend(exc.diagnostics)
                return
            result = getattr(self, f"read_{key}")(key, value, setting.value.span)
        if result is not None:
            self.values[key] = result

    def read_per_role(self, setting: ast.Setting, items: tuple[ast.Labelled, ...]) -> Any:
        key = setting.key
        span = items[0].span.to(items[-1].span)
        if key not in PER_ROLE:
            self.report(
                "E0402",
                f"`{key}` takes one value, not `role: value` pairs",
                span,
                f"expected {SETTINGS[key]}",
            )
            return None
        kind = "optimizer" if key == "optimizer" else "schedule"
        result: dict[str, ComponentSpec] = {}
        first: dict[str, ast.Labelled] = {}
        failed = False
        for item in items:
            if item.label in first:
                self.report(
                    "E0408",
                    f"{key} for `{item.label}` is given twice",
                    item.label_span,
                    "again here",
                    secondary=[Label(first[item.label].label_span, "first given here")],
                )
                failed = True
                continue
            first[item.label] = item
            try:
                value = evaluate_setting(item.value, {})
            except CompileError as exc:
                self.diagnostics.extend(exc.diagnostics)
                failed = True
                continue
            checked = self.component(kind, key, value, item.value.span)
            if checked is None or not checked.ok:
                failed = True
                continue
            result[item.label] = checked.spec()
        return None if failed else result

    # -- component calls ---------------------------------------------------------------

    def component(self, kind: str, key: str, value: Any, span: Span) -> _Checked | None:
        """Check `value` as a call of a registered component of `kind`; None
        when it is no such component, else the call, checked."""
        call = _as_call(value)
        if call is None:
            self.report(
                "E0402",
                f"`{key}` expects {SETTINGS[key]}, got {describe(value)}",
                span,
                f"expected {_article(kind)} {kind}",
            )
            return None
        comp = self.registry.component(kind, call.name)
        if comp is None:
            names = self.registry.component_names(kind)
            plural = _KIND_PLURAL.get(kind, kind + "s")
            self.report(
                "E0404",
                f"unknown {kind} `{call.name}`",
                call.name_span,
                f"not {_article(kind)} {kind}",
                help=self.registry.hint(component=(kind, call.name)) or suggestion(call.name, names),
                notes=[f"the {plural} are: {', '.join(names)}"],
            )
            return None
        return self.call(comp, call)

    def call(self, comp: Component, call: CallValue, extra: tuple[str, ...] = ()) -> _Checked:
        """Bind and validate a call's arguments. The arguments that could be
        bound are validated even after a mistake, so all mistakes are reported;
        `extra` names arguments bound here but checked by the caller."""
        checked = _Checked(comp, None, call)
        data, where, unknown = self.bind(comp, call, extra, checked)
        for name in extra:
            data.pop(name, None)
        fields = [*comp.Args.model_fields, *extra]
        # a misspelt argument is reported as unknown, not also as missing
        meant = {close for name in unknown for close in did_you_mean(name, fields)}
        args = self.validate(comp, call, data, where, meant)
        checked.args = args if checked.ok_so_far else None
        return checked

    def bind(self, comp: Component, call: CallValue, extra: tuple[str, ...], checked: _Checked):
        """Map a call's arguments onto the component's names (inputs go to `checked`)."""
        fields = [*comp.Args.model_fields, *extra]
        unknown: list[str] = []
        positional = list(zip(call.args, call.arg_spans))
        inputs = checked.inputs
        for i, (value, span) in enumerate(positional[: comp.inputs]):
            if isinstance(value, Ref):
                inputs.append(value)
            else:
                checked.inputs_ok = checked.ok_so_far = False
                self.report(
                    "E0207",
                    f"input {i + 1} of `{comp.name}` must name a model output or a data field, got {describe(value)}",
                    span,
                    "expected a name",
                )
        positional = positional[comp.inputs :]
        data: dict[str, Any] = {}
        where: dict[str, Span] = {}
        for i, (value, span) in enumerate(positional):
            if i >= len(comp.positional):
                if comp.positional:
                    takes = f"{len(comp.positional)} positional argument(s) ({_names(comp.positional)})"
                else:
                    takes = "no positional arguments"
                if comp.inputs:
                    takes = f"{comp.inputs} inputs and {takes.replace('no ', 'no other ')}"
                self.report(
                    "E0205",
                    f"`{comp.name}` takes {takes}, but {len(call.args)} were given",
                    span,
                    "one too many",
                    help=f"pass it by name, such as `{comp.name}({fields[0]}=...)`" if fields else None,
                    notes=[f"`{comp.name}` takes {_names(fields)}"],
                )
                checked.ok_so_far = False
                break
            data[comp.positional[i]] = value
            where[comp.positional[i]] = span
        for name, value in call.kwargs.items():
            span = call.kwarg_spans[name]
            if name not in fields:
                self.report(
                    "E0405",
                    f"`{comp.name}` has no argument `{name}`",
                    span,
                    "unknown argument",
                    help=suggestion(name, fields),
                    notes=[f"`{comp.name}` takes {_names(fields)}"],
                )
                unknown.append(name)
                checked.ok_so_far = False
                continue
            if name in data:
                self.report(
                    "E0206",
                    f"argument `{name}` is given twice",
                    span,
                    "given again here",
                    secondary=[Label(where[name], "first given by position")],
                )
                checked.ok_so_far = False
                continue
            data[name] = value
            where[name] = span
        return data, where, unknown

    def validate(
        self, comp: Component, call: CallValue, data: dict, where: dict[str, Span], meant: set[str] = frozenset()
    ) -> ComponentArgs | None:
        try:
            return comp.Args.model_validate(data)
        except ValidationError as exc:
            reported: set = set()
            for err in exc.errors():
                loc = err["loc"]
                arg = loc[0] if loc else (err.get("ctx") or {}).get("arg")
                if arg in reported or (err["type"] == "missing" and arg in meant):
                    continue  # one diagnostic per argument
                reported.add(arg)
                self.diagnostics.append(_arg_diagnostic(comp, call, err, where))
            return None

    def special_call(self, comp: Component, key: str, value: Any, span: Span, extra=()) -> _Checked | None:
        """A call that must be exactly `comp.name(...)`, such as `every(epochs=1)`."""
        if not isinstance(value, CallValue) or value.name != comp.name:
            self.report(
                "E0402", f"`{key}` expects {SETTINGS[key]}, got {describe(value)}", span, f"expected `{comp.name}(...)`"
            )
            return None
        checked = self.call(comp, value, extra)
        return checked if checked.ok or extra else None

    # -- scalar settings ---------------------------------------------------------------

    def integer(self, key: str, value: Any, span: Span, minimum: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.report("E0402", f"`{key}` expects {SETTINGS[key]}, got {describe(value)}", span, "expected an integer")
            return None
        if value < minimum:
            self.report("E0208", f"`{key}` must be at least {minimum}, got {value}", span, "out of range")
            return None
        return value

    def read_epochs(self, key, value, span):
        return self.integer(key, value, span, 1)

    read_steps = read_accumulate = read_keep = read_epochs

    def read_seed(self, key, value, span):
        return self.integer(key, value, span, 0)

    def read_clip_grad(self, key, value, span):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.report("E0402", f"`{key}` expects {SETTINGS[key]}, got {describe(value)}", span, "expected a number")
            return None
        if value <= 0:
            self.report("E0208", f"`{key}` must be greater than 0, got {value}", span, "out of range")
            return None
        return float(value)

    def read_precision(self, key, value, span):
        name = value.name if isinstance(value, Ref) else value
        if not isinstance(name, str) or name not in PRECISIONS:
            self.report(
                "E0402",
                f"`{key}` expects {SETTINGS[key]}, got {describe(value)}",
                span,
                "unknown precision",
                help=suggestion(name, PRECISIONS) if isinstance(name, str) else None,
            )
            return None
        return name

    def read_init(self, key, value, span):
        if not isinstance(value, str) or not value:
            self.report("E0402", f"`{key}` expects {SETTINGS[key]}, got {describe(value)}", span, "expected a string")
            return None
        return value

    def read_freeze(self, key, value, span):
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        names = [v.name if isinstance(v, Ref) else v for v in items]
        if not items or not all(isinstance(n, str) and n for n in names):
            self.report("E0402", f"`{key}` expects {SETTINGS[key]}, got {describe(value)}", span, "expected names")
            return None
        return names

    read_reinit = read_freeze

    # -- component settings ------------------------------------------------------------

    def read_model(self, key, value, span):
        if not isinstance(value, (Ref, CallValue)):
            self.report("E0402", f"`{key}` expects {SETTINGS[key]}, got {describe(value)}", span, "expected a model")
            return None
        return self.model_ref(value, model_setting=True)

    def model_ref(self, value: Ref | CallValue, model_setting: bool = False) -> tuple[ModelRef, ModelInfo] | None:
        try:
            info = self.resolve_model(value)
        except CompileError as exc:
            self.diagnostics.extend(exc.diagnostics)
            self.skipped |= not exc.diagnostics
            return None
        if model_setting:
            self.model = info
        if isinstance(value, Ref):
            return ModelRef(name=value.name, kind=info.kind), info
        args, kwargs, ok = [], {}, True
        for v, s in zip(value.args, value.arg_spans):
            ok &= self.constant(v, s)
            args.append(_plain(v))
        for name, v in value.kwargs.items():
            ok &= self.constant(v, value.kwarg_spans[name])
            kwargs[name] = _plain(v)
        if not ok:
            return None
        return ModelRef(name=value.name, kind=info.kind, args=args, kwargs=kwargs), info

    def constant(self, value: Any, span: Span) -> bool:
        if _is_constant(value):
            return True
        self.report(
            "E0402",
            f"a model argument must be a constant, got {describe(value)}",
            _span_of(value, span),
            "not a constant",
        )
        return False

    def read_data(self, key, value, span):
        self.data = self.component("dataset", key, value, span)
        return self.data if self.data and self.data.ok else None

    def read_loss(self, key, value, span):
        self.loss = self.component("loss", key, value, span)
        return self.loss if self.loss and self.loss.ok else None

    def read_optimizer(self, key, value, span):
        checked = self.component("optimizer", key, value, span)
        return checked.spec() if checked and checked.ok else None

    def read_schedule(self, key, value, span):
        checked = self.component("schedule", key, value, span)
        return checked.spec() if checked and checked.ok else None

    def read_distributed(self, key, value, span):
        checked = self.component("distributed", key, value, span)
        return checked.spec() if checked and checked.ok else None

    def component_list(self, kind: str, key: str, value: Any, span: Span) -> tuple[list[_Checked], bool, bool]:
        """Check one component or a list of them: (the known ones, without
        repeats; whether all passed; whether all were known)."""
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        checked: list[_Checked] = []
        first: dict[str, Span] = {}
        ok = known = True
        for item in items:
            one = self.component(kind, key, item, _span_of(item, span))
            if one is None:
                ok = known = False
                continue
            ok &= one.ok
            name = one.component.name
            if name in first:
                self.report(
                    "E0408",
                    f"{kind} `{name}` is given twice",
                    one.call.span,
                    "again here",
                    secondary=[Label(first[name], "first given here")],
                )
                ok = False
                continue
            first[name] = one.call.span
            checked.append(one)
        return checked, ok, known

    def read_metrics(self, key, value, span):
        checked, ok, known = self.component_list("metric", key, value, span)
        self.metrics = checked if known else None
        return checked if ok else None

    def read_regularization(self, key, value, span):
        checked, ok, _ = self.component_list("regularizer", key, value, span)
        return [c.spec() for c in checked] if ok else None

    def read_evaluate(self, key, value, span):
        checked = self.special_call(_EVERY, key, value, span)
        if checked is None:
            return None
        a = checked.args
        return Every(unit="epochs", n=a.epochs) if a.epochs is not None else Every(unit="steps", n=a.steps)

    read_checkpoint = read_evaluate

    def read_best(self, key, value, span):
        if isinstance(value, (Ref, str)):
            return (value.name if isinstance(value, Ref) else value), None, _span_of(value, span)
        if (
            isinstance(value, CallValue)
            and value.name in ("min", "max")
            and len(value.args) == 1
            and not value.kwargs
            and isinstance(value.args[0], (Ref, str))
        ):
            metric = value.args[0]
            return (metric.name if isinstance(metric, Ref) else metric), value.name, value.arg_spans[0]
        self.report("E0402", f"`{key}` expects {SETTINGS[key]}, got {describe(value)}", span, "expected a metric")
        return None

    def read_early_stop(self, key, value, span):
        return self.special_call(_EARLY_STOP, key, value, span)

    def read_samples(self, key, value, span):
        checked = self.special_call(_GRID, key, value, span)
        if checked is None:
            return None
        return Samples(rows=checked.args.rows, cols=checked.args.cols, every=checked.args.every)

    def read_distill(self, key, value, span):
        checked = self.special_call(_TEACHER, key, value, span, extra=("model",))
        if checked is None:
            return None
        call = checked.call
        if "model" in call.kwargs:
            teacher, teacher_span = call.kwargs["model"], call.kwarg_spans["model"]
        elif call.args:
            teacher, teacher_span = call.args[0], call.arg_spans[0]
        else:
            self.report("E0204", "`teacher` needs a value for `model`", call.span, "`model` is missing")
            return None
        if not isinstance(teacher, (Ref, CallValue)):
            self.report(
                "E0207",
                f"argument `model` of `teacher` expects a model, got {describe(teacher)}",
                teacher_span,
                "expected a model",
            )
            return None
        resolved = self.model_ref(teacher)
        if resolved is None:
            return None
        ref, info = resolved
        if info.kind != "model":
            self.report(
                "E0207", f"the teacher must be a model, `{ref.name}` is a {info.kind}", teacher_span, "not a model"
            )
            return None
        if not checked.ok:
            return None
        a = checked.args
        distill = Distill(teacher=ref, checkpoint=a.checkpoint, temperature=a.temperature, weight=a.weight)
        return distill, info, teacher_span

    # -- settings against each other and against the model ------------------------------

    def key_span(self, key: str) -> Span:
        return self.seen[key].key_span

    def value_span(self, key: str) -> Span:
        value = self.seen[key].value
        return value.span if not isinstance(value, tuple) else value[0].span.to(value[-1].span)

    def check_together(self) -> None:
        decl = self.decl
        for key in REQUIRED:
            if key not in self.seen and key not in self.meant:
                self.report(
                    "E0403",
                    f"train `{decl.name}` has no `{key}` setting",
                    decl.name_span,
                    f"`{key}` is missing",
                    help=f"add `{_EXAMPLES[key]}`",
                )
        if "epochs" not in self.seen and "steps" not in self.seen:
            self.report(
                "E0403",
                f"train `{decl.name}` sets neither `epochs` nor `steps`",
                decl.name_span,
                "no duration",
                help="add `epochs 10` or `steps 1000`",
            )
        self.conflict("epochs", "steps", "a regime runs for a number of epochs or of steps, keep one")
        self.needs("keep", "checkpoint", "add `checkpoint every(epochs=1)`")
        self.needs("reinit", "init", 'add `init "path/to/checkpoint.pt"`: without it every parameter is new')
        self.check_roles()
        self.check_loss()
        self.check_validation_split()
        self.check_monitored()
        self.check_distill()

    def conflict(self, a: str, b: str, help: str) -> None:
        if a in self.seen and b in self.seen:
            first, second = sorted((a, b), key=lambda k: self.seen[k].span.start)
            self.report(
                "E0406",
                f"`{a}` and `{b}` are both set",
                self.key_span(second),
                f"`{second}` set here",
                secondary=[Label(self.key_span(first), f"`{first}` set here")],
                help=help,
            )

    def needs(self, key: str, other: str, help: str) -> None:
        if key in self.seen and other not in self.seen:
            self.report("E0406", f"`{key}` has no effect without `{other}`", self.key_span(key), "here", help=help)

    def model_label(self) -> Label:
        kind = self.model.kind if self.model else "model"
        return Label(self.value_span("model"), f"{_article(kind)} {kind}")

    def check_roles(self) -> None:
        model = self.model
        if model is None:
            return
        for key in PER_ROLE:
            items = self.seen[key].value if key in self.seen else None
            if not isinstance(items, tuple):
                continue  # absent, or one value (for both roles of a gan)
            if model.kind != "gan":
                self.report(
                    "E0406",
                    f"`{key}` is given per role, but `{model.name}` is not a gan",
                    self.value_span(key),
                    "per-role values",
                    secondary=[self.model_label()],
                    help=f"give one {key}",
                )
                continue
            roles = list(model.roles)
            labels = [item.label for item in items]
            for item in items:
                label = item.label
                if label not in model.roles:
                    self.meant.update(did_you_mean(label, roles))
                    self.report(
                        "E0407",
                        f"gan `{model.name}` has no role `{label}`",
                        item.label_span,
                        "unknown role",
                        help=suggestion(label, roles),
                        notes=[f"the roles of `{model.name}` are {_names(roles)}"],
                    )
            for role in roles:
                if role not in labels and role not in self.meant:
                    self.report(
                        "E0403",
                        f"no {key} for the `{role}` of `{model.name}`",
                        self.key_span(key),
                        f"`{role}` is missing",
                        help=f"add `{role}: ...` to `{key}`",
                    )
        if model.kind != "gan" and "samples" in self.seen:
            self.report(
                "E0406",
                f"`samples` needs a gan, but `{model.name}` is a model",
                self.key_span("samples"),
                "only for gan regimes",
                secondary=[self.model_label()],
            )
        if model.kind == "gan" and "distill" in self.seen:
            self.report(
                "E0406",
                f"`distill` needs a model, but `{model.name}` is a gan",
                self.key_span("distill"),
                "not for gan regimes",
                secondary=[self.model_label()],
            )

    def data_fields(self) -> tuple[str, ...] | None:
        """The dataset's fields; None when unknown (no dataset, or fields that
        depend on arguments that failed)."""
        data = self.data
        if data is None or (not data.ok and callable(data.component.fields)):
            return None
        return data.component.data_fields(data.args) if data.ok else data.component.fields

    def check_loss(self) -> None:
        loss = self.loss
        model = self.model
        if loss is None or model is None:
            return
        name = loss.component.name
        if model.kind == "gan":
            if loss.inputs:
                self.report(
                    "E0406",
                    f"the loss of a gan regime takes no inputs, got {len(loss.inputs)}",
                    loss.inputs[0].span.to(loss.inputs[-1].span),
                    "the gan regime feeds the discriminator's outputs itself",
                    secondary=[self.model_label()],
                    help=f"write `loss {name}`",
                )
            return
        fields = self.data_fields()
        data_name = self.data.component.name if fields is not None else None
        known = {**dict.fromkeys(model.outputs), **dict.fromkeys(model.inputs), **dict.fromkeys(fields or ())}
        if loss.inputs_ok and len(loss.inputs) < loss.component.inputs:
            prediction = next(iter(model.outputs), "prediction")
            target = (fields or ("target",))[0]
            self.report(
                "E0204",
                f"`{name}` needs {loss.component.inputs} inputs (prediction, target), got {len(loss.inputs)}",
                loss.call.span,
                "inputs missing",
                help=f"name them: `{name}({prediction}, {target})`",
            )
        for ref in loss.inputs:
            if ref.name in known or fields is None:
                continue  # without a checked dataset its fields are unknown (and the mistake reported)
            notes = [f"`{model.name}` outputs {_names(model.outputs)} and takes {_names(model.inputs)}"]
            if data_name:
                notes.append(f"`{data_name}` yields {_names(fields)}")
            where = f"no output of `{model.name}`" + (f" and no field of `{data_name}`" if data_name else "")
            self.report(
                "E0407",
                f"loss input `{ref.name}` names {where}",
                ref.span,
                "not found",
                help=suggestion(ref.name, known),
                notes=notes,
            )

    def metric_names(self) -> dict[str, str] | None:
        """Monitored quantities -> their default mode; None when metrics failed."""
        if "metrics" in self.seen and self.metrics is None:
            return None
        names = {"train_loss": "min", "val_loss": "min"}
        for metric in self.metrics or []:
            mode = "max" if metric.component.higher_is_better else "min"
            names[f"train_{metric.component.name}"] = mode
            names[f"val_{metric.component.name}"] = mode
        return names

    def check_monitored(self) -> None:
        names = self.metric_names()
        if names is None:
            return
        if "best" in self.values:
            metric, mode, span = self.values["best"]
            if self.known_metric(metric, span, names):
                self.values["best"] = Best(metric=metric, mode=mode or names[metric])
            else:
                del self.values["best"]
        if "early_stop" in self.values:
            checked: _Checked = self.values["early_stop"]
            a = checked.args
            span = checked.call.kwarg_spans.get("metric", checked.call.span)
            if self.known_metric(a.metric, span, names):
                self.values["early_stop"] = EarlyStop(
                    patience=a.patience, metric=a.metric, mode=a.mode or names[a.metric], min_delta=a.min_delta
                )
            else:
                del self.values["early_stop"]

    def known_metric(self, metric: str, span: Span, names: dict[str, str]) -> bool:
        if metric in names:
            return True
        self.report(
            "E0407",
            f"no metric `{metric}` is measured by this regime",
            span,
            "unknown metric",
            help=suggestion(metric, names),
            notes=[f"measured: {_names(names)} (`metrics` adds `train_` and `val_` names)"],
        )
        return False

    def check_validation_split(self) -> None:
        data: _Checked | None = self.values.get("data")
        if data is None or getattr(data.args, "split", None) != 1:
            return
        users = [k for k in ("evaluate", "best", "early_stop") if k in self.seen]
        for key in users:
            if key == "best" and key in self.values and not self.values[key][0].startswith("val_"):
                continue
            if key == "early_stop" and key in self.values and not self.values[key].args.metric.startswith("val_"):
                continue
            self.report(
                "E0406",
                f"`{key}` needs validation data, but `{data.component.name}` keeps none",
                self.key_span(key),
                "needs validation data",
                secondary=[Label(data.call.kwarg_spans.get("split", data.call.span), "split=1: no validation data")],
                help="use a split below 1, such as `split=0.9`",
            )

    def check_distill(self) -> None:
        distill = self.values.get("distill")
        loss: _Checked | None = self.values.get("loss")
        if distill is None or loss is None or not loss.inputs:
            return
        _, teacher, span = distill
        prediction = loss.inputs[0].name
        if self.model and prediction in self.model.outputs and prediction not in teacher.outputs:
            self.report(
                "E0407",
                f"teacher `{teacher.name}` has no output `{prediction}` to distil from",
                span,
                "no such output",
                secondary=[Label(loss.inputs[0].span, "the student's prediction")],
                notes=[f"`{teacher.name}` outputs {_names(teacher.outputs)}"],
            )

    # -- the result ----------------------------------------------------------------------

    def build(self) -> TrainSpec:
        v = self.values
        loss: _Checked = v["loss"]
        return TrainSpec(
            name=self.decl.name,
            model=v["model"][0],
            data=v["data"].spec(),
            loss=LossSpec(**loss.spec().model_dump(), inputs=[r.name for r in loss.inputs]),
            optimizer=v["optimizer"],
            schedule=v.get("schedule"),
            epochs=v.get("epochs"),
            steps=v.get("steps"),
            accumulate=v.get("accumulate", 1),
            clip_grad=v.get("clip_grad"),
            precision=v.get("precision", "fp32"),
            metrics=[m.spec() for m in v.get("metrics", [])],
            evaluate=v.get("evaluate"),
            checkpoint=v.get("checkpoint"),
            keep=v.get("keep"),
            best=v.get("best"),
            early_stop=v.get("early_stop"),
            samples=v.get("samples"),
            regularization=v.get("regularization", []),
            seed=v.get("seed"),
            init=v.get("init"),
            freeze=v.get("freeze", []),
            reinit=v.get("reinit", []),
            distill=v["distill"][0] if "distill" in v else None,
            distributed=v.get("distributed"),
            file=self.decl.span.file if self.decl.span else None,
        )


def _is_constant(value: Any) -> bool:
    if isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_constant(v) for v in value)
    return False


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def validate_train(decl: ast.Train, registry, resolve_model: ResolveModel) -> tuple[TrainSpec | None, list[Diagnostic]]:
    """Check a `train` block; the spec, or None and every mistake found.

    `registry` gives the components (`modelspec.plugins.registry()`);
    `resolve_model(value)` turns the `model` setting's value (a `Ref` or
    `CallValue`) into a `ModelInfo`, raising CompileError for an unknown
    model or bad hyperparameters.
    """
    return _Checker(decl, registry, resolve_model).run()
