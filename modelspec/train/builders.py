"""The runtime of train components: optimizers, schedules, losses, metrics
and regularizers as torch objects (datasets: `modelspec.train.data`).

Imported only when training starts (it imports torch); `mspec check` reads
the components' descriptions in `modelspec.train.components` and never comes
here. Each `make_*` function (and `make_data`) looks the component up in the registry and calls
its `build` ("module:function", imported on first use), so a plugin's
component is built exactly like a built-in one. What a `build` function
receives and returns, per kind:

    optimizer    build(args, param_groups) -> torch.optim.Optimizer
                 `param_groups` as `param_groups()` makes them (torch's form)
    schedule     build(args, optimizer, total_steps) -> LRScheduler
    loss         build(args) -> Criterion: (prediction, target) -> (sum, count),
                 plus `count(target)`; a count is a Tensor, or a Python int
                 where it needs no tensor op (every element counted)
    metric       build(args, loss: Loss | None) -> Metric
    regularizer  build(args) -> (module) -> scalar Tensor
    dataset      build(args, inputs, seed, *, base, bounds) -> DataBundle
                 (`modelspec.train.data`; called by `make_data` there)
                 inputs: {name: TensorType}, the model's inputs, batch dimension first
                 seed:   the run's seed: split and sample with it, so that a run
                         and its resumption see the same data
                 base:   the folder relative paths are resolved against (the
                         spec's folder), or None
                 bounds: {symbol: int}, the largest size the model's `assert`s
                         allow each symbolic input size (`T`)
                 The bundle's `train` and `val` (None: nothing validates) are
                 datasets whose items are dicts of tensors without the batch
                 dimension, under `fields`: every model input's name and every
                 field of the component's `fields` (`label`). `tensor_bundle`
                 makes one from tensors over all samples. The batches are cut
                 by `make_loaders` from `args.batch`, `args.shuffle` and
                 `args.workers` (defaults 32, true, 0). A mistake in the data
                 raises `DataError` with a message naming the file or value;
                 anything else a plugin's build raises is reported as its fault.

`args` is the component's `Args` model with every default filled in.

Conventions:

- Parameter groups. A parameter is left out of weight decay when one of the
  optimizer's `no_decay` patterns is a substring of its dotted name or of the
  kind of layer that holds it (its module's class name in lower case;
  case-sensitive): `bias` matches `fc1.bias`; `norm` matches
  `h.0.layernorm.weight` and, held by a LayerNorm, `h.0.ln_1.weight`;
  `ln_f.weight` matches only that parameter. Parameters that do not require gradients (frozen) are
  not given to the optimizer, and a parameter listed twice (tied weights) is
  optimised once, under its first name.
- Schedules count optimizer steps: call `scheduler.step()` after each
  `optimizer.step()`. The rate used by the step numbered `s` (from 0) is
  `lr(s)` below, with `lr` the optimizer's declared rate:
    constant          lr
    step              lr * gamma ** (s // step_size)              (StepLR)
    multistep         lr * gamma ** (milestones passed by s)      (MultiStepLR)
    exponential       lr * gamma ** s                             (ExponentialLR)
    cosine            s < warmup: lr * (s + 1) / (warmup + 1); then
                      min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2 with
                      p = (s - warmup) / (total - warmup), and min_lr from
                      s = total on (total: the run's steps when not given)
    linear_warmup     lr * min(1, (s + 1) / (steps + 1))
    warm_restarts     SGDR: cosine from lr to min_lr over t0 steps, then
                      t0 * t_mult, ...        (CosineAnnealingWarmRestarts)
    onecycle          OneCycleLR(max_lr, total_steps=the run, pct_start):
                      from max_lr / 25 up to max_lr at step pct_start * total
                      - 1, then down to max_lr / 25e4 at the last step. The
                      optimizer's lr is not used; momentum is NOT cycled (the
                      declared momentum / betas stay as declared).
  Every schedule is a torch LRScheduler whose state_dict() holds plain data
  (no functions), so it loads through torch.load with weights_only=True.
  To resume: build the optimizer and the schedule as at the start,
  then load the optimizer's state, then the schedule's.
- Losses return `(sum, count)`, never the mean: `sum / count` is the mean
  torch would give. Gradient accumulation divides every micro-batch's sum by
  the whole window's count, which `Loss.count(batch)` gives before any
  forward pass. `mean(prediction, target)` gives `(sum / count, count)` at
  once (cross_entropy and the elementwise losses through torch's own
  reduction="mean", which divides by the same count), for a window of one
  micro-batch; with nothing counted its mean is undefined (nan): use the sum.
  What is counted:
    cross_entropy     targets not equal to `ignore_index` (class indices), or
                      rows (class probabilities as targets, same shape as the
                      prediction); class scores are in the LAST dimension:
                      [B, C] vs [B], [B, T, V] vs [B, T]
    mse, l1, bce, bce_with_logits   elements of the target
    kl_div            distributions (rows over the last dimension); the sum is
                      T^2 * KL(softmax(target / T) || softmax(prediction / T))
                      with both prediction and target LOGITS (the teacher's
                      logits in distillation). For a target of probabilities
                      q, give log q (at temperature 1, softmax(log q) = q).
                      sum / count = F.kl_div(..., reduction="batchmean") * T^2.
  The losses run in the dtype they are given; `bce` is unsafe under autocast
  (torch refuses it there), so compute losses outside autocast regions or on
  float32 outputs.
- Metrics read the loss's prediction and target (`make_metric(..., loss=)`):
  accuracy and top_k skip targets equal to the loss's `ignore_index`; with a
  `bce` / `bce_with_logits` loss, accuracy thresholds the prediction at 0.5 /
  0 and the target at 0.5. perplexity is exp(sum of loss sums / sum of loss
  counts) over the updates since `reset`, label smoothing included.
- Regularizers: `l1(w)` is w * sum |p|, `l2(w)` is w * sum p^2 (no 1/2), over
  the parameters that require gradients and have more than one dimension:
  weight matrices, convolution kernels and embeddings, not biases or norm
  scales. Add the penalty once per optimizer step, not once per micro-batch.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import lr_scheduler

from modelspec.train.components import Component, ComponentArgs
from modelspec.train.config import ComponentSpec, LossSpec

# ---- dispatch ------------------------------------------------------------------------


@cache
def _import(build: str) -> Callable[..., Any]:
    module, sep, name = build.partition(":")
    if not sep or not module or not name:
        raise ValueError(f'a component\'s `build` must read "module:function", got {build!r}')
    target: Any = importlib.import_module(module)
    for part in name.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"`build` {build!r} is not callable")
    return target


def runtime(component: Component) -> Callable[..., Any]:
    """The function that builds `component` (its `build`, imported)."""
    if not component.build:
        raise NotImplementedError(f"{component.kind} `{component.name}` has no runtime: its component sets no `build`")
    return _import(component.build)


def _resolve(spec: ComponentSpec, kind: str, registry) -> tuple[Component, ComponentArgs]:
    component = spec.component(registry)
    if component.kind != kind:
        raise ValueError(f"`{spec.name}` is a {component.kind}, not a {kind}")
    return component, component.parse(spec.args)


# ---- optimizers ----------------------------------------------------------------------


def no_decay_match(name: str, patterns: Iterable[str], kind: str = "") -> bool:
    """Whether parameter `name` (dotted) is exempt from weight decay: one of
    `patterns` is a substring of it, or of `kind`, the kind of layer that holds
    it (its module's class name in lower case: `layernorm`, `batchnorm2d`,
    `rmsnorm`, `embedding`), so that `norm` finds every normalisation layer
    whatever the spec calls it (`ln_1`)."""
    return any(pattern in name or pattern in kind for pattern in patterns)


def layer_kinds(module: nn.Module) -> dict[str, str]:
    """Each parameter's dotted name -> the kind of layer that holds it (see `no_decay_match`)."""
    return {
        f"{prefix}.{name}" if prefix else name: type(holder).__name__.lower()
        for prefix, holder in module.named_modules()
        for name, _ in holder.named_parameters(recurse=False)
    }


def param_groups(
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    no_decay: Iterable[str] = (),
    kinds: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """torch parameter groups: the decayed parameters, then (when any) those
    matching `no_decay` (by name, or by the kind of layer in `kinds`) with
    `weight_decay` 0. Frozen parameters are left out, repeated (tied) ones kept
    once. Raises ValueError when nothing is trainable."""
    patterns = tuple(no_decay)
    kinds = kinds or {}
    seen: set[int] = set()
    decay: list[nn.Parameter] = []
    exempt: list[nn.Parameter] = []
    for name, param in named_parameters:
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        (exempt if no_decay_match(name, patterns, kinds.get(name, "")) else decay).append(param)
    groups: list[dict[str, Any]] = []
    if decay:
        groups.append({"params": decay})
    if exempt:
        groups.append({"params": exempt, "weight_decay": 0.0})
    if not groups:
        raise ValueError("the model has no trainable parameters to optimise")
    return groups


def make_optimizer(
    spec: ComponentSpec,
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    registry=None,
    kinds: Mapping[str, str] | None = None,
) -> torch.optim.Optimizer:
    """The optimizer `spec` declares over `named_parameters` (as
    `module.named_parameters()` yields them), grouped by `no_decay` (matched
    against names, and against the layer kinds of `layer_kinds(module)`)."""
    component, args = _resolve(spec, "optimizer", registry)
    groups = param_groups(named_parameters, getattr(args, "no_decay", ()), kinds)
    return runtime(component)(args, groups)


FUSED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def fused_choice(name: str, setting: bool | None, groups, devices: tuple[str, ...] = ("cpu", "cuda")) -> bool:
    """Whether optimizer `name` runs torch's fused kernel over `groups`' parameters: one pass over
    each tensor instead of one per operation (the digits MLP's SGD step: 40 instead of 58 µs on a
    CPU core, bench/RESULTS.md), the same update up to rounding. `setting` None: wherever it runs
    (every parameter a plain floating tensor on one of `devices`; not FSDP's sharded tensors);
    True: required (ValueError where it cannot run); False: torch's default implementation."""
    if setting is False:
        return False
    params = [p for group in groups for p in (group["params"] if isinstance(group, dict) else [group])]
    reasons = []
    kinds = {type(p) for p in params} - {nn.Parameter, torch.Tensor}
    if kinds:
        reasons.append(f"its parameters are {sorted(k.__name__ for k in kinds)[0]}s, not plain tensors")
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in params if p.dtype not in FUSED_DTYPES})
    if dtypes:
        reasons.append(f"it has no fused kernel for {dtypes[0]}")
    places = sorted({p.device.type for p in params})
    if len(places) > 1 or (places and places[0] not in devices):
        reasons.append(f"it runs on {' and '.join(devices)} only, the parameters are on {' and '.join(places)}")
    if setting and reasons:
        raise ValueError(f"`{name}(fused=true)`: torch's fused {name} cannot run here: {reasons[0]}")
    return not reasons


def sgd_optimizer(args, params) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params,
        lr=args.lr,
        momentum=args.momentum,
        dampening=args.dampening,
        weight_decay=args.weight_decay,
        nesterov=args.nesterov,
        fused=fused_choice("sgd", args.fused, params) or None,
    )


def _adam_family(torch_class, name: str, args, params) -> torch.optim.Optimizer:
    return torch_class(
        params,
        lr=args.lr,
        betas=tuple(args.betas),
        eps=args.eps,
        weight_decay=args.weight_decay,
        amsgrad=args.amsgrad,
        fused=fused_choice(name, args.fused, params) or None,
    )


def adam_optimizer(args, params) -> torch.optim.Optimizer:
    return _adam_family(torch.optim.Adam, "adam", args, params)


def adamw_optimizer(args, params) -> torch.optim.Optimizer:
    return _adam_family(torch.optim.AdamW, "adamw", args, params)


def rmsprop_optimizer(args, params) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(
        params, lr=args.lr, alpha=args.alpha, eps=args.eps, weight_decay=args.weight_decay, momentum=args.momentum
    )


def adagrad_optimizer(args, params) -> torch.optim.Optimizer:
    return torch.optim.Adagrad(
        params,
        lr=args.lr,
        lr_decay=args.lr_decay,
        weight_decay=args.weight_decay,
        eps=args.eps,
        fused=fused_choice("adagrad", args.fused, params, devices=("cpu",)) or None,  # torch's is CPU-only
    )


# ---- schedules -------------------------------------------------------------------------

LRScheduler = lr_scheduler.LRScheduler


def make_schedule(spec: ComponentSpec | None, optimizer: torch.optim.Optimizer, total_steps: int, registry=None):
    """The schedule `spec` declares (None: constant) for a run of
    `total_steps` optimizer steps."""
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"`total_steps` must be a positive int, got {total_steps!r}")
    if spec is None:
        return constant_schedule(None, optimizer, total_steps)
    component, args = _resolve(spec, "schedule", registry)
    return runtime(component)(args, optimizer, total_steps)


def _base_lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    return [group.get("initial_lr", group["lr"]) for group in optimizer.param_groups]


def _check_min_lr(min_lr: float, optimizer: torch.optim.Optimizer, name: str) -> None:
    for lr in _base_lrs(optimizer):
        if min_lr > lr:
            raise ValueError(f"`{name}`: min_lr ({min_lr:g}) is above the optimizer's lr ({lr:g})")


class WarmupCosine:
    """The factor of `cosine` at step `s` for one parameter group whose floor
    is `floor` (min_lr / lr). A callable object, so LambdaLR saves it."""

    def __init__(self, warmup: int, total: int, floor: float):
        self.warmup, self.total, self.floor = warmup, total, floor

    def __call__(self, s: int) -> float:
        if s < self.warmup:
            return (s + 1) / (self.warmup + 1)
        if s >= self.total:
            return self.floor
        progress = (s - self.warmup) / (self.total - self.warmup)
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * progress))


class LinearWarmup:
    """The factor of `linear_warmup(steps)` at step `s`."""

    def __init__(self, steps: int):
        self.steps = steps

    def __call__(self, s: int) -> float:
        return min(1.0, (s + 1) / (self.steps + 1))


def constant_schedule(args, optimizer, total_steps):
    return lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def step_schedule(args, optimizer, total_steps):
    return lr_scheduler.StepLR(optimizer, step_size=args.step_size, gamma=args.gamma)


def multistep_schedule(args, optimizer, total_steps):
    return lr_scheduler.MultiStepLR(optimizer, milestones=list(args.milestones), gamma=args.gamma)


def exponential_schedule(args, optimizer, total_steps):
    return lr_scheduler.ExponentialLR(optimizer, gamma=args.gamma)


def cosine_schedule(args, optimizer, total_steps):
    total = args.total if args.total is not None else total_steps
    if args.warmup >= total:
        raise ValueError(f"`cosine`: warmup ({args.warmup} steps) must be shorter than the schedule ({total} steps)")
    _check_min_lr(args.min_lr, optimizer, "cosine")
    factors = [WarmupCosine(args.warmup, total, args.min_lr / lr if lr else 0.0) for lr in _base_lrs(optimizer)]
    return lr_scheduler.LambdaLR(optimizer, factors)


def linear_warmup_schedule(args, optimizer, total_steps):
    return lr_scheduler.LambdaLR(optimizer, [LinearWarmup(args.steps) for _ in optimizer.param_groups])


def warm_restarts_schedule(args, optimizer, total_steps):
    _check_min_lr(args.min_lr, optimizer, "warm_restarts")
    return lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=args.t0, T_mult=args.t_mult, eta_min=args.min_lr)


def onecycle_schedule(args, optimizer, total_steps):
    if total_steps < 2:
        raise ValueError("`onecycle` needs a run of at least 2 steps")
    return lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=float(args.max_lr),
        total_steps=total_steps,
        pct_start=float(args.pct_start),
        cycle_momentum=False,
    )


# ---- losses ----------------------------------------------------------------------------


def _same_shape(name: str, prediction: Tensor, target: Tensor) -> Tensor:
    """`target` shaped and typed as `prediction`; shapes may differ only by
    dimensions of size 1 ([B, 1] against [B]), never by broadcasting."""
    if target.shape != prediction.shape:
        squeeze = [d for d in prediction.shape if d != 1]
        if [d for d in target.shape if d != 1] != squeeze:
            raise ValueError(
                f"`{name}`: the prediction {tuple(prediction.shape)} and the target {tuple(target.shape)} "
                "differ in shape"
            )
        target = target.reshape(prediction.shape)
    return target.to(prediction.dtype)


Count = Tensor | int  # what a loss counted: a Python int where that needs no tensor op


class Criterion:
    """A loss on tensors: `(prediction, target) -> (sum, count)`, and the
    count alone from the target."""

    name = "loss"

    def __call__(self, prediction: Tensor, target: Tensor) -> tuple[Tensor, Count]:
        raise NotImplementedError

    def count(self, target: Tensor) -> Count:
        return target.numel()

    def know_targets(self, values: Sequence[Tensor | None]) -> None:
        """Called before training with every value the target takes in each data set (None: not
        known); a criterion that counts only some targets may then skip counting per batch."""

    def mean(self, prediction: Tensor, target: Tensor) -> tuple[Tensor, Count]:
        """(sum / count, count): the loss of a window of one micro-batch."""
        total, count = self(prediction, target)
        return total / count, count


class CrossEntropy(Criterion):
    name = "cross_entropy"

    def __init__(self, label_smoothing: float = 0.0, ignore_index: int = -100):
        self.label_smoothing, self.ignore_index = label_smoothing, ignore_index
        # True once every target of the data is known not to be `ignore_index`: a count is then
        # the number of targets, not two tensor ops per batch (a small model's step is ~0.5 ms)
        self.none_ignored = False

    def know_targets(self, values):
        self.none_ignored = bool(values) and all(v is not None and not _holds(v, self.ignore_index) for v in values)

    def flat(self, prediction: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """[N, C] scores and [N] indices (or [N, C] probabilities)."""
        if target.dtype == torch.int64 and target.dim() == 1 and prediction.dim() == 2:
            if prediction.shape[0] == target.shape[0]:  # the usual case, checked first (a step is ~0.5 ms)
                return prediction, target
        classes = prediction.shape[-1] if prediction.dim() else 0
        if target.is_floating_point() and target.shape == prediction.shape:
            return prediction.reshape(-1, classes), target.reshape(-1, classes).to(prediction.dtype)
        if prediction.dim() != target.dim() + 1 or prediction.shape[:-1] != target.shape:
            raise ValueError(
                f"`cross_entropy`: the prediction {tuple(prediction.shape)} does not fit the target "
                f"{tuple(target.shape)}: expected class scores [..., C] against class indices [...]"
            )
        if target.is_floating_point():
            raise ValueError(f"`cross_entropy`: class indices must be integers, got {target.dtype}")
        if prediction.dim() == 2:  # [N, C] against [N] already (a view op per step costs more than the check)
            return prediction, target.long()
        return prediction.reshape(-1, classes), target.reshape(-1).long()

    def __call__(self, prediction, target):
        scores, target = self.flat(prediction, target)
        total = F.cross_entropy(
            scores, target, ignore_index=self.ignore_index, label_smoothing=self.label_smoothing, reduction="sum"
        )
        return total, self.count(target)

    def mean(self, prediction, target):
        # torch's "mean" divides by the targets not ignored (rows for probabilities), label smoothing
        # included: the same count as `count` (tests/train/test_builders.py compares the two)
        scores, target = self.flat(prediction, target)
        mean = F.cross_entropy(
            scores, target, ignore_index=self.ignore_index, label_smoothing=self.label_smoothing, reduction="mean"
        )
        return mean, self.count(target)

    def count(self, target):
        if target.is_floating_point():  # class probabilities, classes last
            return target.numel() // max(target.shape[-1], 1) if target.dim() else 0
        if self.none_ignored:
            return target.numel()
        return (target != self.ignore_index).sum()


def _holds(values: Tensor, value: int) -> bool:
    """Whether `values` (integers) hold `value` anywhere."""
    if values.is_floating_point() or values.is_complex():
        return bool((values == value).any())
    if values.dtype != torch.bool:
        info = torch.iinfo(values.dtype)
        if not info.min <= value <= info.max:
            return False
    return bool((values == value).any())


class Elementwise(Criterion):
    def __init__(self, name: str, function: Callable[..., Tensor]):
        self.name, self.function = name, function

    def __call__(self, prediction, target):
        target = _same_shape(self.name, prediction, target)
        return self.function(prediction, target, reduction="sum"), self.count(target)

    def mean(self, prediction, target):
        target = _same_shape(self.name, prediction, target)
        return self.function(prediction, target, reduction="mean"), self.count(target)


class KLDiv(Criterion):
    name = "kl_div"

    def __init__(self, temperature: float = 1.0):
        self.temperature = temperature

    def __call__(self, prediction, target):
        if prediction.shape != target.shape or prediction.dim() == 0:
            raise ValueError(
                f"`kl_div`: the prediction {tuple(prediction.shape)} and the target {tuple(target.shape)} "
                "must be logits of the same shape"
            )
        t = self.temperature
        log_p = F.log_softmax(_at_least_float32(prediction) / t, dim=-1)
        log_q = F.log_softmax(_at_least_float32(target) / t, dim=-1)
        total = F.kl_div(log_p, log_q, reduction="sum", log_target=True) * (t * t)
        return total, self.count(target)

    def count(self, target):
        return target.numel() // max(target.shape[-1], 1) if target.dim() else 0


def _at_least_float32(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def cross_entropy_loss(args) -> Criterion:
    return CrossEntropy(label_smoothing=args.label_smoothing, ignore_index=args.ignore_index)


def mse_loss(args) -> Criterion:
    return Elementwise("mse", F.mse_loss)


def l1_loss(args) -> Criterion:
    return Elementwise("l1", F.l1_loss)


def bce_loss(args) -> Criterion:
    return Elementwise("bce", F.binary_cross_entropy)


def bce_with_logits_loss(args) -> Criterion:
    return Elementwise("bce_with_logits", F.binary_cross_entropy_with_logits)


def kl_div_loss(args) -> Criterion:
    return KLDiv(temperature=args.temperature)


Tensors = Mapping[str, Tensor]


class Loss:
    """A loss as a regime declares it: reads its prediction and its target
    from the model's outputs and the batch. The prediction is looked up among
    the outputs first, then the batch (it may name a model input); the target
    in the batch first, then the outputs."""

    def __init__(self, name: str, args: ComponentArgs, criterion: Criterion, inputs: Sequence[str]):
        if len(inputs) not in (0, 2):
            raise ValueError(f"a loss takes a prediction and a target, got inputs {list(inputs)}")
        self.name, self.args, self.criterion = name, args, criterion
        self.inputs = tuple(inputs)  # () in gan regimes: call `criterion` on tensors

    @property
    def ignore_index(self) -> int | None:
        """Targets equal to this are not counted (cross_entropy), else None."""
        return getattr(self.criterion, "ignore_index", None)

    def _refs(self) -> tuple[str, str]:
        if not self.inputs:
            raise ValueError(f"loss `{self.name}` names no inputs: call its `criterion` on tensors")
        return self.inputs[0], self.inputs[1]

    def prediction(self, outputs: Tensors, batch: Tensors) -> Tensor:
        ref = self._refs()[0]
        return _lookup(ref, outputs, batch, "prediction", self.name)

    def target(self, outputs: Tensors, batch: Tensors) -> Tensor:
        ref = self._refs()[1]
        return _lookup(ref, batch, outputs, "target", self.name)

    def __call__(self, outputs: Tensors, batch: Tensors) -> tuple[Tensor, Tensor]:
        """(sum over the counted elements, their count)."""
        return self.criterion(self.prediction(outputs, batch), self.target(outputs, batch))

    def mean(self, outputs: Tensors, batch: Tensors) -> tuple[Tensor, Tensor]:
        """(sum / count, count): the sum's mean computed at once (nan when nothing is counted)."""
        prediction, target = self._refs()
        if prediction in outputs and target in batch:  # the usual places, looked up once (a step per call)
            return self.criterion.mean(outputs[prediction], batch[target])
        return self.criterion.mean(self.prediction(outputs, batch), self.target(outputs, batch))

    def count(self, batch: Tensors) -> Tensor:
        """The count this batch contributes, without a forward pass. Needs the
        target in the batch; raises LookupError when it is a model output."""
        ref = self._refs()[1]
        if ref not in batch:
            raise LookupError(
                f"loss `{self.name}`: the target `{ref}` is not in the batch, so its count needs a forward pass"
            )
        return self.criterion.count(batch[ref])


def _lookup(ref: str, first: Tensors, then: Tensors, role: str, loss: str) -> Tensor:
    if ref in first:
        return first[ref]
    if ref in then:
        return then[ref]
    known = sorted({*first, *then})
    raise KeyError(f"loss `{loss}`: no tensor `{ref}` for its {role} among {known}")


def make_loss(spec: LossSpec, registry=None) -> Loss:
    component, args = _resolve(spec, "loss", registry)
    criterion = runtime(component)(args)
    return Loss(spec.name, args, criterion, getattr(spec, "inputs", ()))


# ---- metrics ---------------------------------------------------------------------------


class Metric:
    """A measure accumulated over batches: `reset()`, `update(...)` per batch,
    `compute()` for the value since the last reset (nan when nothing counted).
    `name` is what logs show after `train_` / `val_`. The Trainer calls `update`
    under `torch.no_grad()`."""

    name: str = "metric"
    higher_is_better: bool = True

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, outputs: Tensors, batch: Tensors, loss_sum: Tensor, loss_count: Tensor) -> None:
        raise NotImplementedError

    def compute(self) -> float:
        raise NotImplementedError


class _Counting(Metric):
    """hits / counted: Python ints for CPU tensors, else tensors on the
    batch's device (no sync until `compute`)."""

    def __init__(self, loss: Loss | None):
        if loss is None or not loss.inputs:
            raise ValueError(f"metric `{self.name}` needs the loss's prediction and target")
        self.loss = loss
        self.reset()

    def reset(self):
        self.hits: Tensor | int = 0
        self.counted: Tensor | int = 0

    def compute(self):
        counted = float(self.counted)
        return float(self.hits) / counted if counted else math.nan

    def tensors(self, outputs, batch) -> tuple[Tensor, Tensor]:
        # updates run under torch.no_grad(): nothing to detach
        return self.loss.prediction(outputs, batch), self.loss.target(outputs, batch)

    def indices(self, prediction: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """[N, C] scores and [N] class indices, as cross_entropy reads them."""
        if target.dtype == torch.int64 and target.dim() == 1 and prediction.dim() == 2:
            if prediction.shape[0] == target.shape[0]:  # the usual case: no view ops per batch
                return prediction, target
        if target.is_floating_point() and target.shape == prediction.shape:
            target = target.argmax(-1)
        elif prediction.dim() != target.dim() + 1 or prediction.shape[:-1] != target.shape:
            raise ValueError(
                f"metric `{self.name}`: the prediction {tuple(prediction.shape)} does not fit the target "
                f"{tuple(target.shape)}: expected class scores [..., C] against class indices [...]"
            )
        return prediction.reshape(-1, prediction.shape[-1]), target.reshape(-1).long()

    def mask(self, target: Tensor) -> Tensor | None:
        """Where the targets count (None: everywhere)."""
        ignore = self.loss.ignore_index
        if ignore is None or getattr(self.loss.criterion, "none_ignored", False):
            return None
        return target != ignore

    def add(self, hits: Tensor, mask: Tensor | None) -> None:
        if mask is None:
            total, counted = hits.sum(), hits.numel()
        else:
            total, counted = (hits & mask).sum(), mask.sum()
        if hits.device.type == "cpu":  # reading a number back costs nothing here: no tensor kept
            self.hits += int(total)
            self.counted += int(counted)
        else:  # on an accelerator, kept on the device until `compute` (no wait per batch)
            self.hits = self.hits + total
            self.counted = self.counted + counted


class Accuracy(_Counting):
    name = "accuracy"

    def update(self, outputs, batch, loss_sum=None, loss_count=None):
        prediction, target = self.tensors(outputs, batch)
        if self.loss.name in ("bce", "bce_with_logits"):
            threshold = 0.5 if self.loss.name == "bce" else 0.0
            target = _same_shape(self.name, prediction, target)
            self.add((prediction > threshold) == (target > 0.5), None)
            return
        scores, target = self.indices(prediction, target)
        self.add(scores.argmax(-1) == target, self.mask(target))


class TopK(_Counting):
    # named as the checker names it (`best val_top_k`), whatever `k` is
    name = "top_k"

    def __init__(self, k: int, loss: Loss | None):
        self.k = k
        super().__init__(loss)

    def update(self, outputs, batch, loss_sum=None, loss_count=None):
        scores, target = self.indices(*self.tensors(outputs, batch))
        if self.k > scores.shape[-1]:
            raise ValueError(f"metric `top_k({self.k})`: the prediction has only {scores.shape[-1]} classes")
        best = scores.topk(self.k, dim=-1).indices
        self.add((best == target.unsqueeze(-1)).any(-1), self.mask(target))


class Perplexity(Metric):
    name = "perplexity"
    higher_is_better = False

    def __init__(self):
        self.reset()

    def reset(self):
        self.loss_sum: Tensor | float = 0.0
        self.loss_count: Tensor | float = 0.0

    def update(self, outputs, batch, loss_sum, loss_count):
        loss_sum = torch.as_tensor(loss_sum).detach()
        wide = torch.float32 if loss_sum.device.type == "mps" else torch.float64
        self.loss_sum = self.loss_sum + loss_sum.to(wide)
        if isinstance(loss_count, Tensor):
            loss_count = loss_count.detach().to(device=loss_sum.device)
        self.loss_count = self.loss_count + loss_count

    def compute(self):
        count = float(self.loss_count)
        return math.exp(float(self.loss_sum) / count) if count else math.nan


def accuracy_metric(args, loss: Loss | None) -> Metric:
    return Accuracy(loss)


def top_k_metric(args, loss: Loss | None) -> Metric:
    return TopK(args.k, loss)


def perplexity_metric(args, loss: Loss | None) -> Metric:
    return Perplexity()


def make_metric(spec: ComponentSpec, registry=None, *, loss: Loss | LossSpec | None = None) -> Metric:
    """The metric `spec` declares; `loss` (the regime's) tells accuracy and
    top_k where the prediction and the target are. `higher_is_better` comes
    from the component, as `best` and `early_stop` read it."""
    component, args = _resolve(spec, "metric", registry)
    if isinstance(loss, LossSpec):
        loss = make_loss(loss, registry)
    metric = runtime(component)(args, loss)
    metric.higher_is_better = component.higher_is_better
    return metric


# ---- regularizers ------------------------------------------------------------------------


class Penalty:
    """`weight` * sum |p|^power over the trainable parameters with more than
    one dimension."""

    def __init__(self, power: int, weight: float):
        self.power, self.weight = power, weight

    def __call__(self, module: nn.Module) -> Tensor:
        terms = [
            (p.abs() if self.power == 1 else p.square()).sum()
            for p in module.parameters()
            if p.requires_grad and p.dim() > 1
        ]
        if not terms:
            device = next(module.parameters(), torch.empty(0)).device
            return torch.zeros((), device=device)
        return self.weight * sum(terms[1:], terms[0])


def l1_regularizer(args) -> Callable[[nn.Module], Tensor]:
    return Penalty(1, args.weight)


def l2_regularizer(args) -> Callable[[nn.Module], Tensor]:
    return Penalty(2, args.weight)


def make_regularizer(spec: ComponentSpec, registry=None) -> Callable[[nn.Module], Tensor]:
    component, args = _resolve(spec, "regularizer", registry)
    return runtime(component)(args)
