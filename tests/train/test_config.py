"""`validate_train`: train blocks parsed from text, checked against a fake model table.

Every test block is written as `train t {` on line 1 and settings from line 2,
indented by four spaces, so a setting's key is at column 5.
"""

from __future__ import annotations

import pluggy
import pytest

from modelspec import hookspec
from modelspec.diagnostics import CompileError, error
from modelspec.plugins import Registry, build_registry
from modelspec.semantics.values import Ref
from modelspec.syntax import parse
from modelspec.train import components
from modelspec.train.components import BUILTIN_COMPONENTS
from modelspec.train.config import (
    Best,
    ComponentSpec,
    EarlyStop,
    Every,
    ModelInfo,
    ModelRef,
    Samples,
    TrainSpec,
    validate_train,
)

MLP = ModelInfo("MLP", "model", inputs={"image": "float[B, 1, 28, 28]"}, outputs={"logits": "float[B, 10]"})
BIG = ModelInfo("Big", "model", inputs={"image": "float[B, 1, 28, 28]"}, outputs={"logits": "float[B, 10]"})
AE = ModelInfo("AE", "model", inputs={"image": "float[B, 64]"}, outputs={"recon": "float[B, 64]"})
GPT = ModelInfo("GPT", "model", inputs={"tokens": "int64[B, T]"}, outputs={"logits": "float[B, T, 256]"})
DCGAN = ModelInfo(
    "DCGAN",
    "gan",
    roles={
        "generator": ModelInfo("G", inputs={"z": "float[B, 64]"}, outputs={"image": "float[B, 1, 16, 16]"}),
        "discriminator": ModelInfo("D", inputs={"image": "float[B, 1, 16, 16]"}, outputs={"p": "float[B, 1]"}),
    },
)
MODELS = {m.name: m for m in (MLP, BIG, AE, GPT, DCGAN)}


def resolve(value):
    info = MODELS.get(value.name)
    if info is None:
        span = value.span if isinstance(value, Ref) else value.name_span
        raise CompileError(error("E0201", f"cannot find model `{value.name}`", span, "not found"))
    return info


REGISTRY = Registry(components={(c.kind, c.name): c for c in BUILTIN_COMPONENTS})

BASE = {
    "model": "MLP",
    "data": "digits(batch=64)",
    "loss": "cross_entropy(logits, label)",
    "optimizer": "sgd(lr=0.01, momentum=0.9)",
    "epochs": "10",
}


def block(*lines: str, base: dict | None = None, **changes) -> str:
    """A train block: BASE settings (with `changes`, None removing one) then `lines`."""
    settings = {**(BASE if base is None else base), **changes}
    body = [f"    {k} {v}" for k, v in settings.items() if v is not None] + [f"    {line}" for line in lines]
    return "train t {\n" + "\n".join(body) + "\n}\n"


def check(text: str):
    (decl,) = parse(text, "t.mspec").module.decls
    return validate_train(decl, REGISTRY, resolve)


def ok(text: str) -> TrainSpec:
    spec, diagnostics = check(text)
    assert diagnostics == [], [d.message for d in diagnostics]
    assert spec is not None
    return spec


def errors(text: str) -> list[tuple[str, str, int, int]]:
    spec, diagnostics = check(text)
    assert spec is None
    return [(d.code, d.message, d.span.line, d.span.column) for d in diagnostics]


def only(text: str):
    spec, diagnostics = check(text)
    assert spec is None and len(diagnostics) == 1, [d.message for d in diagnostics]
    return diagnostics[0]


# ---- regimes that pass -----------------------------------------------------------------


def test_minimal_regime():
    spec = ok(block())
    assert spec.name == "t"
    assert spec.model == ModelRef(name="MLP", kind="model")
    assert spec.data == ComponentSpec(
        kind="dataset",
        name="digits",
        args={"batch": 64, "split": 0.8, "shuffle": True, "size": 8, "workers": 0, "scale": "unit", "channels": 1},
    )
    assert spec.loss.name == "cross_entropy"
    assert spec.loss.inputs == ["logits", "label"]
    assert spec.loss.args == {"label_smoothing": 0.0, "ignore_index": -100}
    assert spec.optimizer.args == {
        "lr": 0.01,
        "momentum": 0.9,
        "nesterov": False,
        "weight_decay": 0.0,
        "dampening": 0.0,
        "no_decay": [],
        "fused": None,
    }
    assert (spec.epochs, spec.steps, spec.accumulate, spec.precision) == (10, None, 1, "fp32")
    assert spec.schedule is None and spec.metrics == [] and spec.clip_grad is None


def test_every_setting():
    spec = ok(
        block(
            "schedule cosine(warmup=100)",
            "accumulate 4",
            "clip_grad 1",
            "precision bf16",
            "metrics [accuracy, top_k(3)]",
            "evaluate every(epochs=1)",
            "checkpoint every(steps=500)",
            "keep 3",
            "best max(val_accuracy)",
            "early_stop early_stop(patience=3, metric=val_top_k)",
            "regularization [l1(1e-5), l2(weight=1e-4)]",
            "seed 0",
            'init "runs/base/best.pt"',
            'freeze [features, "blocks.0"]',
            "reinit head",
            'distill teacher(model=Big(), checkpoint="big.pt", temperature=2.0)',
            "distributed fsdp",
            model="MLP(hidden=256)",
            optimizer="adamw(3e-4, no_decay=[bias, norm])",
        )
    )
    assert spec.model == ModelRef(name="MLP", kind="model", kwargs={"hidden": 256})
    assert spec.optimizer.name == "adamw"
    assert spec.optimizer.args["lr"] == 3e-4 and spec.optimizer.args["weight_decay"] == 0.01
    assert spec.optimizer.args["no_decay"] == ["bias", "norm"]
    assert spec.optimizer.args["betas"] == [0.9, 0.999]
    assert spec.schedule == ComponentSpec(
        kind="schedule", name="cosine", args={"total": None, "warmup": 100, "min_lr": 0.0}
    )
    assert (spec.accumulate, spec.clip_grad, spec.precision) == (4, 1.0, "bf16")
    assert [(m.name, m.args) for m in spec.metrics] == [("accuracy", {}), ("top_k", {"k": 3})]
    assert spec.evaluate == Every(unit="epochs", n=1)
    assert spec.checkpoint == Every(unit="steps", n=500)
    assert spec.keep == 3
    assert spec.best == Best(metric="val_accuracy", mode="max")
    assert spec.early_stop == EarlyStop(patience=3, metric="val_top_k", mode="max", min_delta=0.0)
    assert [(r.name, r.args) for r in spec.regularization] == [("l1", {"weight": 1e-5}), ("l2", {"weight": 1e-4})]
    assert (spec.seed, spec.init, spec.freeze, spec.reinit) == (
        0,
        "runs/base/best.pt",
        ["features", "blocks.0"],
        ["head"],
    )
    assert spec.distill.teacher == ModelRef(name="Big", kind="model")
    assert (spec.distill.checkpoint, spec.distill.temperature, spec.distill.weight) == ("big.pt", 2.0, 0.5)
    assert spec.distributed == ComponentSpec(kind="distributed", name="fsdp", args={})


def test_spec_round_trips_through_json():
    spec = ok(block("schedule multistep([100, 200])", "metrics accuracy", "best val_loss", "distributed ddp()"))
    again = TrainSpec.model_validate_json(spec.model_dump_json())
    assert again == spec
    assert again.optimizer.parsed(REGISTRY).momentum == 0.9
    assert again.schedule.parsed(REGISTRY).milestones == [100, 200]


def test_gan_regime_with_an_optimizer_per_role():
    spec = ok(
        block(
            "samples grid(8, 8, every=2)",
            base={
                "model": "DCGAN",
                "data": "digits(batch=128, size=16)",
                "loss": "bce",
                "optimizer": "generator: adam(lr=2e-4, betas=(0.5, 0.999)), discriminator: adam(lr=1e-4)",
                "schedule": "generator: constant, discriminator: exponential(0.99)",
                "epochs": "20",
            },
        )
    )
    assert spec.model == ModelRef(name="DCGAN", kind="gan")
    assert spec.loss.name == "bce" and spec.loss.inputs == []
    assert set(spec.optimizer) == {"generator", "discriminator"}
    assert spec.optimizer["generator"].args["betas"] == [0.5, 0.999]
    assert spec.optimizer["discriminator"].args["lr"] == 1e-4
    assert spec.schedule["discriminator"].args == {"gamma": 0.99}
    assert spec.samples == Samples(rows=8, cols=8, every=2)
    assert TrainSpec.model_validate_json(spec.model_dump_json()) == spec


def test_gan_regime_with_one_optimizer_for_both_roles():
    spec = ok(block(base={"model": "DCGAN", "data": "digits", "loss": "bce", "optimizer": "adam", "steps": "100"}))
    assert spec.optimizer == ComponentSpec(
        kind="optimizer",
        name="adam",
        args={
            "lr": 1e-3,
            "betas": [0.9, 0.999],
            "eps": 1e-8,
            "weight_decay": 0.0,
            "amsgrad": False,
            "no_decay": [],
            "fused": None,
        },
    )
    assert spec.steps == 100 and spec.epochs is None


@pytest.mark.parametrize(
    "setting, value, expected",
    [
        ("optimizer", "sgd(0.1)", {"lr": 0.1}),
        ("optimizer", "sgd(lr=1)", {"lr": 1.0}),  # an int where a float is expected
        ("optimizer", "rmsprop(momentum=0.9)", {"lr": 1e-2, "alpha": 0.99, "momentum": 0.9}),
        ("optimizer", "adagrad(lr_decay=0.01)", {"lr": 1e-2, "lr_decay": 0.01, "eps": 1e-10}),
        ("schedule", "step(30)", {"step_size": 30, "gamma": 0.1}),
        ("schedule", "linear_warmup(steps=500)", {"steps": 500}),
        ("schedule", "warm_restarts(10, t_mult=2)", {"t0": 10, "t_mult": 2, "min_lr": 0.0}),
        ("schedule", "onecycle(0.1)", {"max_lr": 0.1, "pct_start": 0.3}),
        ("data", "synthetic(samples=256)", {"batch": 32, "samples": 256, "split": 0.8}),
        ("data", 'npz("d.npz", x=images, y="labels")', {"path": "d.npz", "x": "images", "y": "labels"}),
        ("data", 'npy("x.npy", "y.npy")', {"x_path": "x.npy", "y_path": "y.npy"}),
        ("data", 'csv("d.csv", label=digit)', {"path": "d.csv", "label": "digit"}),
        ("data", 'image_folder("imgs", 32, channels=1)', {"path": "imgs", "size": 32, "channels": 1}),
        ("loss", "cross_entropy(logits, label, label_smoothing=0.1)", {"label_smoothing": 0.1}),
        ("loss", "kl_div(logits, label, temperature=2)", {"temperature": 2.0}),
    ],
)
def test_component_arguments(setting, value, expected):
    spec = ok(block(**{setting: value}))
    args = getattr(spec, setting).args
    assert {k: args[k] for k in expected} == expected


def test_text_dataset_fields_and_word_arguments():
    spec = ok(
        block(
            base={
                "model": "GPT",
                "data": 'text("tiny.txt", tokenizer=byte, block=64)',
                "loss": "cross_entropy(logits, target)",
                "optimizer": "adamw",
                "steps": "1000",
                "precision": '"fp16"',
            }
        )
    )
    assert spec.data.args == {
        "path": "tiny.txt",
        "tokenizer": "byte",
        "tokenizer_file": None,
        "block": 64,
        "batch": 32,
        "split": 0.9,
        "workers": 0,
    }
    assert spec.precision == "fp16"


def test_a_loss_may_reference_a_model_input():
    spec = ok(block(model="AE", data='npy("x.npy")', loss="mse(recon, image)"))
    assert spec.loss.inputs == ["recon", "image"]


@pytest.mark.parametrize(
    "best, metrics, expected",
    [
        ("val_loss", "accuracy", Best(metric="val_loss", mode="min")),
        ("train_accuracy", "accuracy", Best(metric="train_accuracy", mode="max")),
        ("val_perplexity", "perplexity", Best(metric="val_perplexity", mode="min")),
        ("max(val_loss)", "accuracy", Best(metric="val_loss", mode="max")),
        ('min("val_accuracy")', "accuracy", Best(metric="val_accuracy", mode="min")),
    ],
)
def test_best_mode(best, metrics, expected):
    assert ok(block(f"best {best}", f"metrics {metrics}")).best == expected


# ---- components and their registration -----------------------------------------------


def test_builtin_components_register_through_the_hook():
    pm = pluggy.PluginManager(hookspec.PROJECT)
    pm.add_hookspecs(hookspec)
    pm.register(components, name="modelspec.train.components")
    registry = build_registry(pm)
    assert registry.problems == []
    assert registry.component_names("optimizer") == ["adagrad", "adam", "adamw", "rmsprop", "sgd"]
    assert registry.component_names("schedule") == [
        "constant",
        "cosine",
        "exponential",
        "linear_warmup",
        "multistep",
        "onecycle",
        "step",
        "warm_restarts",
    ]
    assert registry.component_names("loss") == ["bce", "bce_with_logits", "cross_entropy", "kl_div", "l1", "mse"]
    assert registry.component_names("metric") == ["accuracy", "perplexity", "top_k"]
    assert registry.component_names("dataset") == ["csv", "digits", "image_folder", "npy", "npz", "synthetic", "text"]
    assert registry.component_names("regularizer") == ["l1", "l2"]
    assert registry.component_names("distributed") == ["ddp", "fsdp"]


@pytest.mark.parametrize(
    "optimizer, tensors",
    [
        ("sgd(lr=0.1)", 0),
        ("sgd(lr=0.1, momentum=0.9)", 1),
        ("adam", 2),
        ("adam(amsgrad=true)", 3),
        ("adamw", 2),
        ("rmsprop", 1),
        ("rmsprop(momentum=0.9)", 2),
        ("adagrad", 1),
    ],
)
def test_optimizer_state_tensors(optimizer, tensors):
    spec = ok(block(optimizer=optimizer))
    component = spec.optimizer.component(REGISTRY)
    assert component.state_tensors(spec.optimizer.args) == tensors  # from the JSON form
    assert component.state_tensors(spec.optimizer.parsed(REGISTRY)) == tensors


def test_dataset_fields():
    npy = REGISTRY.component("dataset", "npy")
    assert npy.data_fields({"x_path": "x.npy"}) == ()
    assert npy.data_fields({"x_path": "x.npy", "y_path": "y.npy"}) == ("label",)
    assert REGISTRY.component("dataset", "text").data_fields({"path": "t.txt"}) == ("tokens", "target")
    assert REGISTRY.component("dataset", "digits").data_fields({}) == ("label",)


# ---- mistakes, one code at a time -------------------------------------------------------


def test_e0401_unknown_setting():
    d = only(block("epoch 3", epochs=None, steps="10"))
    assert (d.code, d.message, d.span.line, d.span.column) == ("E0401", "unknown setting `epoch`", 7, 5)
    assert d.help == "did you mean `epochs`?"


def test_e0401_lists_the_settings_when_nothing_is_close():
    d = only(block("colour red"))
    assert d.help is None and d.notes[0].startswith("a train block takes: model, data, loss, optimizer,")


@pytest.mark.parametrize(
    "line, message, column",
    [
        ("epochs 1.5", "`epochs` expects a positive integer, got float `1.5`", 12),
        ("optimizer 3", "`optimizer` expects an optimizer, such as `adam(lr=1e-3)`, or", 15),
        ("accumulate true", "`accumulate` expects a positive integer, got bool `true`", 16),
        ('clip_grad "1"', '`clip_grad` expects a positive number, got string "1"', 15),
        ("precision fp61", "`precision` expects `fp32`, `bf16` or `fp16`, got name `fp61`", 15),
        ("metrics [accuracy, 3]", "`metrics` expects a metric, such as `accuracy`", 13),
        ("evaluate 1", "`evaluate` expects `every(epochs=N)` or `every(steps=N)`, got int `1`", 14),
        ("best top(val_loss)", "`best` expects a metric name, `min(name)` or `max(name)`", 10),
        ("init runs", "`init` expects a checkpoint path as a string", 10),
        ("freeze [1]", "`freeze` expects node names", 12),
        ("model 3", "`model` expects a model, such as `MLP` or `MLP(hidden=256)`, got int `3`", 11),
        ("seed a: 1", "`seed` takes one value, not `role: value` pairs", 10),
    ],
)
def test_e0402_value_of_the_wrong_kind(line, message, column):
    key = line.split()[0]
    d = only(block(line, **{key: None}) if key in BASE else block(line))
    assert d.code == "E0402"
    assert d.message.startswith(message)
    line_number = 2 + len([k for k in BASE if k != key])
    assert (d.span.line, d.span.column) == (line_number, column)


def test_e0402_labels_the_expected_kind():
    d = only(block(optimizer="3"))
    assert (d.primary.message, d.span.line, d.span.column) == ("expected an optimizer", 5, 15)
    d = only(block(precision="fp61"))
    assert d.help == "did you mean `fp16`?"


def test_e0403_required_settings_missing():
    text = "train t {\n    metrics accuracy\n}\n"
    assert errors(text) == [
        ("E0403", "train `t` has no `model` setting", 1, 7),
        ("E0403", "train `t` has no `data` setting", 1, 7),
        ("E0403", "train `t` has no `loss` setting", 1, 7),
        ("E0403", "train `t` has no `optimizer` setting", 1, 7),
        ("E0403", "train `t` sets neither `epochs` nor `steps`", 1, 7),
    ]
    spec, diagnostics = check(text)
    assert diagnostics[3].help == "add `optimizer adam(lr=1e-3)`"


def test_e0403_gan_role_without_optimizer():
    d = only(
        block(base={"model": "DCGAN", "data": "digits", "loss": "bce", "optimizer": "generator: adam", "epochs": "1"})
    )
    assert (d.code, d.message, d.span.line, d.span.column) == (
        "E0403",
        "no optimizer for the `discriminator` of `DCGAN`",
        5,
        5,
    )


def test_e0404_unknown_component():
    d = only(block(optimizer="adamm(lr=1e-3)"))
    assert (d.code, d.message, d.span.line, d.span.column) == ("E0404", "unknown optimizer `adamm`", 5, 15)
    assert d.help == "did you mean one of `adam`, `adamw`?"
    assert d.notes == ("the optimizers are: adagrad, adam, adamw, rmsprop, sgd",)
    assert errors(block(data="digit(batch=8)", loss="crossentropy(logits, label)")) == [
        ("E0404", "unknown dataset `digit`", 3, 10),
        ("E0404", "unknown loss `crossentropy`", 4, 10),
    ]


def test_e0405_unknown_argument():
    d = only(block(optimizer="sgd(lr=0.1, momentun=0.9)"))
    assert (d.code, d.message, d.span.line, d.span.column) == ("E0405", "`sgd` has no argument `momentun`", 5, 27)
    assert d.help == "did you mean `momentum`?"
    assert d.notes == ("`sgd` takes `lr`, `momentum`, `nesterov`, `weight_decay`, `dampening`, `no_decay`, `fused`",)


def test_e0405_a_misspelt_required_argument_is_not_also_missing():
    d = only(block(schedule="step(stepsize=10)"))
    assert (d.code, d.message, d.help) == ("E0405", "`step` has no argument `stepsize`", "did you mean `step_size`?")


@pytest.mark.parametrize(
    "optimizer, message, column",
    [
        ('sgd(lr="fast")', 'argument `lr` of `sgd` expects a number, got string "fast"', 19),
        ("sgd(lr=0.1, nesterov=1)", "argument `nesterov` of `sgd` expects `true` or `false`, got int `1`", 27),
        ("adam(betas=0.9)", "argument `betas` of `adam` expects a tuple, got float `0.9`", 20),
        ("adam(no_decay=bias)", "argument `no_decay` of `adam` expects a list, got name `bias`", 20),
        ("sgd(lr=fast)", "argument `lr` of `sgd` expects a number, got name `fast`", 19),
    ],
)
def test_e0207_wrong_argument_type(optimizer, message, column):
    d = only(block(optimizer=optimizer))
    assert (d.code, d.message, d.span.line, d.span.column) == ("E0207", message, 5, column)


@pytest.mark.parametrize(
    "setting, value, message, column",
    [
        ("optimizer", "sgd(lr=-0.1)", "argument `lr` of `sgd` must be greater than 0, got float `-0.1`", 19),
        (
            "optimizer",
            "adam(betas=(0.5, 1.0))",
            "argument `betas[1]` of `adam` must be less than 1, got float `1.0`",
            20,
        ),
        ("optimizer", "sgd(lr=0.1, nesterov=true)", "`nesterov` needs `momentum` greater than 0", 27),
        ("optimizer", "adam(no_decay=[bias])", "`no_decay` has no effect when `weight_decay` is 0", 20),
        ("data", "digits(split=0)", "argument `split` of `digits` must be greater than 0, got int `0`", 17),
        ("data", "digits(batch=0)", "argument `batch` of `digits` must be at least 1, got int `0`", 17),
        ("data", 'npz("")', "argument `path` of `npz` must not be empty", 14),
        ("data", 'image_folder("i", 32, channels=2)', "`channels` must be 1 (grey) or 3 (RGB)", 32),
        ("schedule", "cosine(total=100, warmup=100)", "`warmup` must be shorter than `total`", 32),
        ("schedule", "multistep([30, 10])", "`milestones` must be strictly increasing", 24),
        (
            "schedule",
            "multistep([])",
            "argument `milestones` of `multistep` has the wrong length: list should have",
            24,
        ),
        (
            "loss",
            "cross_entropy(logits, label, label_smoothing=1)",
            "argument `label_smoothing` of `cross_entropy`",
            39,
        ),
    ],
)
def test_e0208_argument_out_of_range(setting, value, message, column):
    d = only(block(**{setting: value}))
    line = 2 + list(BASE).index(setting) if setting in BASE else 7
    assert d.code == "E0208" and d.message.startswith(message)
    assert (d.span.line, d.span.column) == (line, column)


def test_e0208_setting_out_of_range():
    assert errors(block("accumulate 0", "keep 0", "checkpoint every(epochs=1)", epochs="0")) == [
        ("E0208", "`epochs` must be at least 1, got 0", 6, 12),
        ("E0208", "`accumulate` must be at least 1, got 0", 7, 16),
        ("E0208", "`keep` must be at least 1, got 0", 8, 10),
    ]


def test_e0204_e0205_e0206_argument_binding():
    assert errors(block(optimizer="sgd(momentum=0.9)", schedule="step(10, 0.5)")) == [
        ("E0204", "`sgd` needs a value for `lr`", 5, 15),
        ("E0205", "`step` takes 1 positional argument(s) (`step_size`), but 2 were given", 7, 23),
    ]
    d = only(block(optimizer="sgd(0.1, lr=0.2)"))
    assert (d.code, d.message, d.span.column) == ("E0206", "argument `lr` is given twice", 24)
    assert d.secondary[0].span.column == 19
    d = only(block(loss="mse(logits)", data="digits"))
    assert (d.code, d.message, d.help) == (
        "E0204",
        "`mse` needs 2 inputs (prediction, target), got 1",
        "name them: `mse(logits, label)`",
    )
    d = only(block(loss="cross_entropy(0.1)"))
    assert (d.code, d.message) == (
        "E0207",
        "input 1 of `cross_entropy` must name a model output or a data field, got float `0.1`",
    )


def test_e0406_epochs_and_steps():
    d = only(block("steps 100"))
    assert (d.code, d.message, d.span.line, d.span.column) == ("E0406", "`epochs` and `steps` are both set", 7, 5)
    assert (d.secondary[0].span.line, d.secondary[0].message) == (6, "`epochs` set here")


@pytest.mark.parametrize(
    "lines, changes, message, line, column",
    [
        (
            (),
            {"optimizer": "generator: adam, discriminator: sgd(0.1)"},
            "`optimizer` is given per role, but `MLP`",
            5,
            15,
        ),
        (("samples grid(4, 4)",), {}, "`samples` needs a gan, but `MLP` is a model", 7, 5),
        (("keep 3",), {}, "`keep` has no effect without `checkpoint`", 7, 5),
        (("reinit head",), {}, "`reinit` has no effect without `init`", 7, 5),
        (("evaluate every(epochs=1)",), {"data": "digits(split=1)"}, "`evaluate` needs validation data, but", 7, 5),
        (("best val_loss",), {"data": "digits(split=1.0)"}, "`best` needs validation data", 7, 5),
        (("checkpoint every(epochs=1, steps=5)",), {}, "`every` takes `epochs` or `steps`, not both", 7, 32),
    ],
)
def test_e0406_conflicting_settings(lines, changes, message, line, column):
    d = only(block(*lines, **changes))
    assert d.code == "E0406" and d.message.startswith(message)
    assert (d.span.line, d.span.column) == (line, column)


def test_e0406_gan_regime_settings():
    gan = {"model": "DCGAN", "data": "digits", "loss": "bce(logits, label)", "optimizer": "adam", "epochs": "1"}
    assert errors(block('distill teacher(model=Big(), checkpoint="b.pt")', base=gan)) == [
        ("E0406", "the loss of a gan regime takes no inputs, got 2", 4, 14),
        ("E0406", "`distill` needs a model, but `DCGAN` is a gan", 7, 5),
    ]


def test_e0407_loss_input_names_nothing():
    d = only(block(loss="cross_entropy(logit, label)"))
    assert (d.code, d.message, d.span.line, d.span.column) == (
        "E0407",
        "loss input `logit` names no output of `MLP` and no field of `digits`",
        4,
        24,
    )
    assert d.help == "did you mean `logits`?"
    assert d.notes == ("`MLP` outputs `logits` and takes `image`", "`digits` yields `label`")
    # npy without labels yields no `label`
    d = only(block(data='npy("x.npy")'))
    assert (d.code, d.span.column) == ("E0407", 32)


@pytest.mark.parametrize(
    "lines, changes, message, line, column",
    [
        (("best max(val_acc)", "metrics accuracy"), {}, "no metric `val_acc` is measured by this regime", 7, 14),
        (("early_stop early_stop(3, metric=accuracy)",), {}, "no metric `accuracy` is measured", 7, 30),
        (('distill teacher(AE(), "ae.pt")',), {}, "teacher `AE` has no output `logits`", 7, 21),
        (
            (),
            {"model": "DCGAN", "loss": "bce", "optimizer": "generator: adam, discrim: adam"},
            "gan `DCGAN` has no role `discrim`",
            5,
            32,
        ),
    ],
)
def test_e0407_references(lines, changes, message, line, column):
    spec, diagnostics = check(block(*lines, **changes))
    d = next(d for d in diagnostics if d.code == "E0407")
    assert d.message.startswith(message)
    assert (d.span.line, d.span.column) == (line, column)


def test_e0407_best_suggests_a_measured_name():
    d = only(block("metrics accuracy", "best accuracy"))
    assert d.help == "did you mean one of `val_accuracy`, `train_accuracy`?"


def test_e0408_setting_given_twice():
    d = only(block("epochs 20"))
    assert (d.code, d.message, d.span.line, d.span.column) == ("E0408", "setting `epochs` is given twice", 7, 5)
    assert (d.secondary[0].span.line, d.secondary[0].span.column, d.secondary[0].message) == (6, 5, "first given here")


def test_e0408_repeats_inside_a_setting():
    assert errors(block("metrics [accuracy, top_k, accuracy]", "regularization [l2(1), l2(2)]")) == [
        ("E0408", "metric `accuracy` is given twice", 7, 31),
        ("E0408", "regularizer `l2` is given twice", 8, 28),
    ]
    gan = {"model": "DCGAN", "data": "digits", "loss": "bce", "epochs": "1"}
    d = only(block(optimizer="generator: adam, discriminator: adam, generator: sgd(0.1)", base=gan))
    assert (d.code, d.message, d.span.line, d.span.column) == (
        "E0408",
        "optimizer for `generator` is given twice",
        6,
        53,
    )


def test_errors_of_the_expression_evaluator_are_kept():
    d = only(block(epochs='"a" * 2'))
    assert (d.code, d.span.line) == ("E0307", 6)


def test_unknown_model_is_reported_by_the_resolver():
    assert errors(block(model="Nope(3)")) == [("E0201", "cannot find model `Nope`", 2, 11)]


def test_model_arguments_must_be_constants():
    d = only(block(model="MLP(hidden=big)"))
    assert (d.code, d.message, d.span.column) == ("E0402", "a model argument must be a constant, got name `big`", 22)


def test_every_mistake_of_a_block_is_reported_at_once():
    text = """\
train bad {
    model     MLP
    data      digits(batch=0, splt=0.5)
    loss      cross_entropy(logit, labels)
    optimizer adamm(lr=1e-3)
    schedule  step(step_size=1.5)
    epochs    1.5
    steps     100
    epoch     3
    metrics   [accuracy, accuracy]
    best      max(val_acc)
    epochs    3
}
"""
    assert errors(text) == [
        ("E0208", "argument `batch` of `digits` must be at least 1, got int `0`", 3, 22),
        ("E0405", "`digits` has no argument `splt`", 3, 31),
        ("E0407", "loss input `logit` names no output of `MLP` and no field of `digits`", 4, 29),
        ("E0407", "loss input `labels` names no output of `MLP` and no field of `digits`", 4, 36),
        ("E0404", "unknown optimizer `adamm`", 5, 15),
        ("E0207", "argument `step_size` of `step` expects an integer, got float `1.5`", 6, 20),
        ("E0402", "`epochs` expects a positive integer, got float `1.5`", 7, 15),
        ("E0406", "`epochs` and `steps` are both set", 8, 5),
        ("E0401", "unknown setting `epoch`", 9, 5),
        ("E0408", "metric `accuracy` is given twice", 10, 26),
        ("E0407", "no metric `val_acc` is measured by this regime", 11, 19),
        ("E0408", "setting `epochs` is given twice", 12, 5),
    ]


def test_e0208_word_outside_its_choices():
    d = only(block(data='text("t.txt", tokenizer=word)', loss="cross_entropy(logits, target)"))
    assert (d.code, d.message, d.span.line, d.span.column) == (
        "E0208",
        'argument `tokenizer` of `text` must be `char`, `byte`, `tokenizers` or `tiktoken`, got string "word"',
        3,
        24,
    )
