"""The runtime of train components (`modelspec.train.builders`) against torch."""

from __future__ import annotations

import io
import math
import re
import subprocess
import sys

import pytest
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from modelspec.plugins import Registry  # noqa: E402
from modelspec.train import builders  # noqa: E402
from modelspec.train.builders import (  # noqa: E402
    make_loss,
    make_metric,
    make_optimizer,
    make_regularizer,
    make_schedule,
    param_groups,
)
from modelspec.train.components import BUILTIN_COMPONENTS, Component, SGDArgs  # noqa: E402
from modelspec.train.config import ComponentSpec, LossSpec  # noqa: E402

REGISTRY = Registry(components={(c.kind, c.name): c for c in BUILTIN_COMPONENTS})
RUNTIME_KINDS = ("optimizer", "schedule", "loss", "metric", "regularizer", "dataset")


def spec(kind: str, name: str, **args) -> ComponentSpec:
    return ComponentSpec(kind=kind, name=name, args=args)


def loss_spec(name: str, prediction: str = "logits", target: str = "label", **args) -> LossSpec:
    return LossSpec(kind="loss", name=name, args=args, inputs=[prediction, target])


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.norm = nn.LayerNorm(8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.norm(self.fc1(x))))


def tiny() -> Tiny:
    torch.manual_seed(0)
    model = Tiny()
    with torch.no_grad():  # LayerNorm starts at (1, 0): move it so decay shows
        model.norm.weight.add_(0.1 * torch.randn(8))
        model.norm.bias.add_(0.1 * torch.randn(8))
    return model


def train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int = 5) -> None:
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(16, 4, generator=generator)
        y = torch.randint(0, 3, (16,), generator=generator)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()


def assert_same_parameters(a: nn.Module, b: nn.Module) -> None:
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(p, q), name


# ---- dispatch ----------------------------------------------------------------------------


def test_every_builtin_runtime_component_has_a_build_that_imports():
    for component in BUILTIN_COMPONENTS:
        if component.kind in RUNTIME_KINDS:
            assert component.build, f"{component.kind} {component.name}"
        if component.build:
            assert callable(builders.runtime(component)), component.build


def test_checking_never_imports_torch():
    code = (
        "import sys; import modelspec.train.components, modelspec.train.config, modelspec.plugins; "
        "modelspec.plugins.registry(); assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _plugin_optimizer(args, params):
    return torch.optim.SGD(params, lr=args.lr * 2)


def test_a_plugin_component_is_built_through_its_build():
    plugin = Component("optimizer", "double_sgd", SGDArgs, build=f"{__name__}:_plugin_optimizer")
    registry = Registry(components={**REGISTRY.components, ("optimizer", "double_sgd"): plugin})
    optimizer = make_optimizer(spec("optimizer", "double_sgd", lr=0.1), tiny().named_parameters(), registry)
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.param_groups[0]["lr"] == 0.2


def test_a_component_without_build_or_of_another_kind_is_refused():
    bare = Component("optimizer", "bare", SGDArgs)
    registry = Registry(components={**REGISTRY.components, ("optimizer", "bare"): bare})
    with pytest.raises(NotImplementedError, match="optimizer `bare` has no runtime"):
        make_optimizer(spec("optimizer", "bare", lr=0.1), tiny().named_parameters(), registry)
    with pytest.raises(ValueError, match="is a schedule, not a optimizer"):
        make_optimizer(spec("schedule", "constant"), tiny().named_parameters(), REGISTRY)
    broken = Component("optimizer", "broken", SGDArgs, build="no_colon_here")
    with pytest.raises(ValueError, match="module:function"):
        builders.runtime(broken)


def test_the_process_registry_is_the_default():
    optimizer = make_optimizer(spec("optimizer", "sgd", lr=0.1), tiny().named_parameters())
    assert isinstance(optimizer, torch.optim.SGD)


# ---- optimizers --------------------------------------------------------------------------

OPTIMIZERS = [
    ("sgd", "SGD", {"lr": 0.1}),
    ("sgd", "SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-2}),
    ("sgd", "SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.1, "weight_decay": 1e-3}),
    ("adam", "Adam", {}),
    ("adam", "Adam", {"lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 1e-2, "amsgrad": True}),
    ("adamw", "AdamW", {}),
    ("adamw", "AdamW", {"lr": 1e-2, "weight_decay": 0.1, "amsgrad": True}),
    ("rmsprop", "RMSprop", {}),
    ("rmsprop", "RMSprop", {"lr": 1e-3, "alpha": 0.9, "eps": 1e-6, "momentum": 0.9, "weight_decay": 1e-3}),
    ("adagrad", "Adagrad", {}),
    ("adagrad", "Adagrad", {"lr": 0.05, "lr_decay": 0.01, "weight_decay": 1e-3, "eps": 1e-8}),
]


FUSED = {"SGD", "Adam", "AdamW", "Adagrad"}  # torch has a fused CPU kernel for these (RMSprop: none)


@pytest.mark.parametrize("name, torch_name, args", OPTIMIZERS)
def test_optimizer_steps_exactly_as_torch(name, torch_name, args):
    """Every hyperparameter as torch fills it in, and the same steps, bit for bit, as torch's own
    optimizer with the implementation ours picks: the fused kernel wherever torch has one."""
    ours, reference = tiny(), tiny()
    optimizer = make_optimizer(spec("optimizer", name, **args), ours.named_parameters(), REGISTRY)
    assert type(optimizer) is getattr(torch.optim, torch_name)
    assert optimizer.defaults.get("fused") is (True if torch_name in FUSED else None)
    implementation = {"fused": True} if torch_name in FUSED else {}
    expected = getattr(torch.optim, torch_name)(reference.parameters(), **args, **implementation)
    for key, value in expected.defaults.items():  # every hyperparameter as torch fills it in
        assert optimizer.defaults[key] == value, key
    train(ours, optimizer)
    train(reference, expected)
    assert_same_parameters(ours, reference)


@pytest.mark.parametrize("name, torch_name, args", [o for o in OPTIMIZERS if o[1] in FUSED])
def test_fused_false_keeps_torchs_default_implementation_and_fused_differs_by_rounding_only(name, torch_name, args):
    default, fused, reference = tiny(), tiny(), tiny()
    plain = make_optimizer(spec("optimizer", name, **args, fused=False), default.named_parameters(), REGISTRY)
    assert plain.defaults["fused"] is None
    train(default, plain)
    train(reference, getattr(torch.optim, torch_name)(reference.parameters(), **args))
    assert_same_parameters(default, reference)
    train(fused, make_optimizer(spec("optimizer", name, **args), fused.named_parameters(), REGISTRY))
    for (key, a), b in zip(fused.named_parameters(), default.parameters(), strict=True):
        torch.testing.assert_close(a, b, msg=key)


def test_fused_is_chosen_only_where_torchs_kernel_runs():
    weights = [torch.nn.Parameter(torch.zeros(3))]
    assert builders.fused_choice("sgd", None, [{"params": weights}])
    assert builders.fused_choice("sgd", None, [torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))])
    assert not builders.fused_choice("sgd", False, [{"params": weights}])

    class Sharded(torch.Tensor):  # as FSDP's DTensor parameters: not a plain tensor
        pass

    odd = [
        ([torch.nn.Parameter(torch.zeros(3).as_subclass(Sharded))], "Shardeds, not plain tensors"),
        ([torch.nn.Parameter(torch.zeros(3, device="meta"))], "cpu and cuda only, the parameters are on meta"),
        ([torch.nn.Parameter(torch.zeros(3, dtype=torch.complex64))], "no fused kernel for complex64"),
    ]
    for params, reason in odd:
        assert not builders.fused_choice("sgd", None, [{"params": params}])
        with pytest.raises(ValueError, match=re.escape("`sgd(fused=true)`: torch's fused sgd cannot run here: ")):
            builders.fused_choice("sgd", True, [{"params": params}])
        with pytest.raises(ValueError, match=re.escape(reason)):
            builders.fused_choice("sgd", True, [{"params": params}])
    assert not builders.fused_choice("adagrad", None, weights, devices=("cuda",))


def test_resuming_keeps_the_implementation_chosen_for_this_run():
    """torch's load_state_dict takes the saved param groups whole, `fused` included: a state saved
    unfused (or fused on the CPU, as adagrad can only be) must not decide the resumed run's."""
    from modelspec.train.loop import load_optimizer_state

    saved_by = make_optimizer(spec("optimizer", "adagrad", fused=False), tiny().named_parameters(), REGISTRY)
    train(tiny(), saved_by)
    resumed = make_optimizer(spec("optimizer", "adagrad"), tiny().named_parameters(), REGISTRY)
    assert resumed.defaults["fused"] is True and saved_by.param_groups[0]["fused"] is None
    load_optimizer_state(resumed, saved_by.state_dict())
    assert [g["fused"] for g in resumed.param_groups] == [True]
    assert resumed.param_groups[0]["lr"] == saved_by.param_groups[0]["lr"]


def test_rmsprop_takes_no_fused_argument():
    with pytest.raises(ValueError, match="fused"):
        make_optimizer(spec("optimizer", "rmsprop", fused=True), tiny().named_parameters(), REGISTRY)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop", "adagrad"])
def test_no_decay_parameters_form_a_group_without_weight_decay(name):
    ours, reference = tiny(), tiny()
    args = {"lr": 0.05, "weight_decay": 0.1, "no_decay": ["bias", "norm"]}
    optimizer = make_optimizer(spec("optimizer", name, **args), ours.named_parameters(), REGISTRY)
    names = {id(p): n for n, p in ours.named_parameters()}
    decayed, exempt = optimizer.param_groups
    assert [names[id(p)] for p in decayed["params"]] == ["fc1.weight", "fc2.weight"]
    assert [names[id(p)] for p in exempt["params"]] == ["fc1.bias", "norm.weight", "norm.bias", "fc2.bias"]
    assert (decayed["weight_decay"], exempt["weight_decay"]) == (0.1, 0.0)

    ref = dict(reference.named_parameters())
    groups = [
        {"params": [ref["fc1.weight"], ref["fc2.weight"]]},
        {"params": [ref[n] for n in ("fc1.bias", "norm.weight", "norm.bias", "fc2.bias")], "weight_decay": 0.0},
    ]
    torch_class = type(optimizer)
    implementation = {"fused": True} if torch_class.__name__ in FUSED else {}
    expected = torch_class(groups, **{k: v for k, v in args.items() if k != "no_decay"}, **implementation)
    train(ours, optimizer)
    train(reference, expected)
    assert_same_parameters(ours, reference)


def test_no_decay_patterns_are_substrings_of_the_dotted_name():
    model = tiny()
    groups = param_groups(model.named_parameters(), ["norm.weight"])
    names = {id(p): n for n, p in model.named_parameters()}
    assert [names[id(p)] for p in groups[1]["params"]] == ["norm.weight"]
    # no parameter matches: one group
    assert len(param_groups(model.named_parameters(), ["ln_"])) == 1
    assert builders.no_decay_match("h.0.layernorm.weight", ["norm"])
    assert not builders.no_decay_match("h.0.ln_1.weight", ["norm"])
    assert builders.no_decay_match("h.0.ln_1.weight", ["norm"], kind="layernorm")  # by the kind of layer
    assert not builders.no_decay_match("fc.Bias", ["bias"])  # case-sensitive


def test_no_decay_finds_norm_layers_whatever_their_names():
    """`norm` exempts the parameters of every normalisation layer: a LayerNorm named `ln_1`,
    a BatchNorm named `bn`, not the linear layers beside them."""
    model = nn.ModuleDict({"ln_1": nn.LayerNorm(4), "bn": nn.BatchNorm1d(4), "fc": nn.Linear(4, 4)})
    kinds = builders.layer_kinds(model)
    assert kinds["ln_1.weight"] == "layernorm" and kinds["bn.bias"] == "batchnorm1d" and kinds["fc.weight"] == "linear"
    groups = param_groups(model.named_parameters(), ["norm"], kinds)
    names = {id(p): n for n, p in model.named_parameters()}
    assert [names[id(p)] for p in groups[0]["params"]] == ["fc.weight", "fc.bias"]
    assert sorted(names[id(p)] for p in groups[1]["params"]) == ["bn.bias", "bn.weight", "ln_1.bias", "ln_1.weight"]


def test_frozen_and_tied_parameters():
    model = tiny()
    model.fc1.weight.requires_grad_(False)
    named = list(model.named_parameters()) + [("alias.weight", model.fc2.weight)]
    groups = param_groups(named)
    assert len(groups) == 1
    params = groups[0]["params"]
    assert len(params) == 5 and all(p is not model.fc1.weight for p in params)
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        make_optimizer(spec("optimizer", "sgd", lr=0.1), model.named_parameters(), REGISTRY)


# ---- schedules ---------------------------------------------------------------------------


def sgd(lr: float = 0.1, groups: int = 1, momentum: float = 0.0) -> torch.optim.SGD:
    weights = [nn.Parameter(torch.ones(2)) for _ in range(groups)]
    return torch.optim.SGD([{"params": [w]} for w in weights], lr=lr, momentum=momentum)


def step_through(optimizer, schedule, steps: int) -> list[float]:
    """The rate each of `steps` optimizer steps uses."""
    used = []
    for _ in range(steps):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return used


def lrs(name: str | None, args: dict, total_steps: int, steps: int | None = None, lr: float = 0.1) -> list[float]:
    optimizer = sgd(lr)
    schedule_spec = None if name is None else spec("schedule", name, **args)
    schedule = make_schedule(schedule_spec, optimizer, total_steps, REGISTRY)
    return step_through(optimizer, schedule, steps or total_steps)


def approx(values):
    return pytest.approx(values, rel=1e-12, abs=1e-15)


def test_constant_and_none():
    assert lrs("constant", {}, 7) == [0.1] * 7
    assert lrs(None, {}, 7) == [0.1] * 7


def test_step_multistep_exponential():
    assert lrs("step", {"step_size": 3, "gamma": 0.5}, 10) == approx([0.1 * 0.5 ** (s // 3) for s in range(10)])
    expected = [0.1 * 0.1 ** sum(s >= m for m in (2, 5)) for s in range(8)]
    assert lrs("multistep", {"milestones": [2, 5], "gamma": 0.1}, 8) == approx(expected)
    assert lrs("exponential", {"gamma": 0.9}, 10) == approx([0.1 * 0.9**s for s in range(10)])


def cosine_reference(s: int, lr: float, warmup: int, total: int, min_lr: float) -> float:
    if s < warmup:
        return lr * (s + 1) / (warmup + 1)
    if s >= total:
        return min_lr
    progress = (s - warmup) / (total - warmup)
    return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * progress)) / 2


def test_cosine_warms_up_then_decays_to_min_lr():
    got = lrs("cosine", {"warmup": 3, "min_lr": 0.01}, 13)
    assert got == approx([cosine_reference(s, 0.1, 3, 13, 0.01) for s in range(13)])
    assert got[:4] == approx([0.025, 0.05, 0.075, 0.1])
    assert got[3] == 0.1  # the declared rate, exactly, when warm-up ends
    assert got[8] == approx(0.01 + 0.09 * (1 + math.cos(math.pi * 5 / 10)) / 2)
    # an explicit total shorter than the run: min_lr from then on
    got = lrs("cosine", {"total": 10, "min_lr": 0.01}, 20)
    assert got == approx([cosine_reference(s, 0.1, 0, 10, 0.01) for s in range(20)])
    assert got[10:] == approx([0.01] * 10)


def test_cosine_applies_to_every_group():
    optimizer = sgd(0.1, groups=2)
    schedule = make_schedule(spec("schedule", "cosine", warmup=2), optimizer, 10, REGISTRY)
    for _ in range(6):
        optimizer.step()
        schedule.step()
    first, second = (g["lr"] for g in optimizer.param_groups)
    assert first == second == approx(cosine_reference(6, 0.1, 2, 10, 0.0))


def test_linear_warmup():
    assert lrs("linear_warmup", {"steps": 4}, 9) == approx([0.1 * min(1, (s + 1) / 5) for s in range(9)])
    assert lrs("linear_warmup", {"steps": 4}, 9)[4:] == [0.1] * 5


def sgdr_reference(s: int, lr: float, t0: int, t_mult: int, min_lr: float) -> float:
    period, t = t0, s
    while t >= period:
        t -= period
        period *= t_mult
    return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * t / period)) / 2


def test_warm_restarts_restart_at_t0_then_t0_times_t_mult():
    got = lrs("warm_restarts", {"t0": 3, "t_mult": 2, "min_lr": 0.01}, 25)
    assert got == approx([sgdr_reference(s, 0.1, 3, 2, 0.01) for s in range(25)])
    assert [s for s in range(1, 25) if got[s] > got[s - 1]] == [3, 9, 21]  # restarts: 3, 3 + 6, 9 + 12
    assert got[3] == got[9] == got[21] == approx(0.1)


def test_onecycle_peaks_at_max_lr_and_keeps_momentum():
    optimizer = sgd(0.1, momentum=0.9)
    schedule = make_schedule(spec("schedule", "onecycle", max_lr=1.0, pct_start=0.25), optimizer, 20, REGISTRY)
    got, momenta = [], []
    for _ in range(20):
        got.append(optimizer.param_groups[0]["lr"])
        momenta.append(optimizer.param_groups[0]["momentum"])
        optimizer.step()
        schedule.step()
    reference_optimizer = sgd(0.1, momentum=0.9)
    reference = torch.optim.lr_scheduler.OneCycleLR(
        reference_optimizer, max_lr=1.0, total_steps=20, pct_start=0.25, cycle_momentum=False
    )
    assert got == step_through(reference_optimizer, reference, 20)
    assert got[0] == approx(1.0 / 25)
    assert max(got) == approx(1.0) and got.index(max(got)) == 4  # 0.25 * 20 - 1
    assert got[-1] == approx(1.0 / 25 / 1e4)
    assert momenta == [0.9] * 20


def test_schedule_errors():
    with pytest.raises(ValueError, match="warmup .* must be shorter"):
        lrs("cosine", {"warmup": 10}, 10)
    with pytest.raises(ValueError, match="min_lr .* above the optimizer's lr"):
        lrs("cosine", {"min_lr": 0.5}, 10)
    with pytest.raises(ValueError, match="min_lr .* above the optimizer's lr"):
        lrs("warm_restarts", {"t0": 2, "min_lr": 0.5}, 10)
    with pytest.raises(ValueError, match="total_steps"):
        lrs("constant", {}, 0)


SCHEDULES = [
    ("constant", {}),
    ("step", {"step_size": 3, "gamma": 0.5}),
    ("multistep", {"milestones": [4, 9], "gamma": 0.3}),
    ("exponential", {"gamma": 0.9}),
    ("cosine", {"warmup": 4, "min_lr": 0.001}),
    ("cosine", {"total": 8}),
    ("linear_warmup", {"steps": 10}),
    ("warm_restarts", {"t0": 3, "t_mult": 2, "min_lr": 0.001}),
    ("onecycle", {"max_lr": 0.5, "pct_start": 0.4}),
]


@pytest.mark.parametrize("name, args", SCHEDULES)
@pytest.mark.parametrize("stop", [1, 6, 11])
def test_schedule_resumes_from_its_state_dict(name, args, stop):
    total = 16

    def fresh():
        model = tiny()
        optimizer = make_optimizer(
            spec("optimizer", "sgd", lr=0.1, momentum=0.9, weight_decay=0.01, no_decay=["bias"]),
            model.named_parameters(),
            REGISTRY,
        )
        return model, optimizer, make_schedule(spec("schedule", name, **args), optimizer, total, REGISTRY)

    def run(model, optimizer, schedule, steps):
        used = []
        for _ in range(steps):
            used.append([g["lr"] for g in optimizer.param_groups])
            train(model, optimizer, steps=1)
            schedule.step()
        return used

    whole = run(*fresh(), total)

    model, optimizer, schedule = fresh()
    first = run(model, optimizer, schedule, stop)
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # plain data only: no functions stored
    model, optimizer, schedule = fresh()
    optimizer.load_state_dict(saved["optimizer"])
    schedule.load_state_dict(saved["schedule"])
    assert first + run(model, optimizer, schedule, total - stop) == whole


# ---- losses ------------------------------------------------------------------------------


def mean(loss, outputs, batch):
    total, count = loss(outputs, batch)
    assert int(count) == int(loss.count(batch))
    return total / count


def test_cross_entropy_on_classes():
    torch.manual_seed(0)
    logits, label = torch.randn(6, 5), torch.randint(0, 5, (6,))
    loss = make_loss(loss_spec("cross_entropy", label_smoothing=0.1), REGISTRY)
    total, count = loss({"logits": logits}, {"label": label})
    assert int(count) == 6
    expected = F.cross_entropy(logits, label, label_smoothing=0.1)
    torch.testing.assert_close(total / count, expected)
    torch.testing.assert_close(total, F.cross_entropy(logits, label, label_smoothing=0.1, reduction="sum"))


@pytest.mark.parametrize("ignore_index, smoothing", [(-100, 0.0), (0, 0.0), (-100, 0.2)])
def test_token_level_cross_entropy_skips_padding(ignore_index, smoothing):
    torch.manual_seed(0)
    logits = torch.randn(4, 7, 11)
    target = torch.randint(1, 11, (4, 7))
    target[0, 3:] = ignore_index
    target[2, 5:] = ignore_index
    loss = make_loss(
        loss_spec("cross_entropy", "logits", "target", ignore_index=ignore_index, label_smoothing=smoothing), REGISTRY
    )
    total, count = loss({"logits": logits}, {"target": target})
    assert int(count) == 4 * 7 - 4 - 2 == int(loss.count({"target": target}))
    expected = F.cross_entropy(
        logits.reshape(-1, 11), target.reshape(-1), ignore_index=ignore_index, label_smoothing=smoothing
    )
    torch.testing.assert_close(total / count, expected)
    assert loss.ignore_index == ignore_index


def test_cross_entropy_with_class_probabilities():
    torch.manual_seed(0)
    logits, probs = torch.randn(5, 4), torch.softmax(torch.randn(5, 4), -1)
    loss = make_loss(loss_spec("cross_entropy"), REGISTRY)
    torch.testing.assert_close(mean(loss, {"logits": logits}, {"label": probs}), F.cross_entropy(logits, probs))


def test_cross_entropy_refuses_mismatched_shapes():
    loss = make_loss(loss_spec("cross_entropy"), REGISTRY)
    with pytest.raises(ValueError, match=r"expected class scores \[..., C\]"):
        loss({"logits": torch.randn(2, 5, 3)}, {"label": torch.zeros(2, 3, dtype=torch.long)})
    with pytest.raises(ValueError, match="must be integers"):
        loss({"logits": torch.randn(2, 5)}, {"label": torch.zeros(2)})


@pytest.mark.parametrize(
    "name, function, prediction",
    [
        ("mse", F.mse_loss, lambda x: x),
        ("l1", F.l1_loss, lambda x: x),
        ("bce", F.binary_cross_entropy, torch.sigmoid),
        ("bce_with_logits", F.binary_cross_entropy_with_logits, lambda x: x),
    ],
)
def test_elementwise_losses(name, function, prediction):
    torch.manual_seed(0)
    pred = prediction(torch.randn(6, 3))
    target = torch.rand(6, 3) if name != "mse" else torch.randn(6, 3)
    loss = make_loss(loss_spec(name, "out", "y"), REGISTRY)
    total, count = loss({"out": pred}, {"y": target})
    assert int(count) == 18
    torch.testing.assert_close(total / count, function(pred, target))
    # a [B, 1] prediction against [B] labels (integers too) is not broadcast to [B, B]
    labels = torch.tensor([0, 1, 1, 0])
    column = prediction(torch.randn(4, 1))
    total, count = loss({"out": column}, {"y": labels})
    assert int(count) == 4
    torch.testing.assert_close(total / count, function(column, labels.float().unsqueeze(1)))
    with pytest.raises(ValueError, match="differ in shape"):
        loss({"out": torch.rand(4, 2)}, {"y": torch.rand(4)})


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_kl_div_between_softened_logits(temperature):
    torch.manual_seed(0)
    student, teacher = torch.randn(5, 7), torch.randn(5, 7)
    loss = make_loss(loss_spec("kl_div", "logits", "teacher", temperature=temperature), REGISTRY)
    total, count = loss({"logits": student}, {"teacher": teacher})
    assert int(count) == 5
    t = temperature
    expected = F.kl_div(F.log_softmax(student / t, -1), F.softmax(teacher / t, -1), reduction="batchmean") * (t * t)
    torch.testing.assert_close(total / count, expected)
    # token level: one distribution per token
    total, count = loss({"logits": torch.randn(2, 3, 7)}, {"teacher": torch.randn(2, 3, 7)})
    assert int(count) == 6
    # probabilities as targets: give their logarithm
    probs = torch.softmax(torch.randn(5, 7), -1)
    at_one = make_loss(loss_spec("kl_div", "logits", "teacher"), REGISTRY)
    total, count = at_one({"logits": student}, {"teacher": probs.log()})
    torch.testing.assert_close(total / count, F.kl_div(F.log_softmax(student, -1), probs, reduction="batchmean"))


def _ignored(target: torch.Tensor, index: int) -> torch.Tensor:
    target = target.clone()
    target[0, 3:] = index
    target[2, 5:] = index
    return target


@pytest.mark.parametrize(
    "spec, prediction, target",
    [
        (("cross_entropy", "p", "t", {"label_smoothing": 0.1}), (6, 5), lambda: torch.randint(0, 5, (6,))),
        (("cross_entropy", "p", "t", {}), (4, 7, 11), lambda: _ignored(torch.randint(1, 11, (4, 7)), -100)),
        (
            ("cross_entropy", "p", "t", {"ignore_index": 0}),
            (4, 7, 11),
            lambda: _ignored(torch.randint(1, 11, (4, 7)), 0),
        ),
        (
            ("cross_entropy", "p", "t", {"ignore_index": 0, "label_smoothing": 0.2}),
            (4, 7, 11),
            lambda: _ignored(torch.randint(1, 11, (4, 7)), 0),
        ),
        (
            ("cross_entropy", "p", "t", {"label_smoothing": 0.2}),
            (4, 7, 11),
            lambda: _ignored(torch.randint(1, 11, (4, 7)), -100),
        ),
        (("cross_entropy", "p", "t", {}), (5, 4), lambda: torch.softmax(torch.randn(5, 4), -1)),
        (("mse", "p", "t", {}), (6, 3), lambda: torch.randn(6, 3)),
        (("bce_with_logits", "p", "t", {}), (6, 1), lambda: torch.randint(0, 2, (6,))),
        (("kl_div", "p", "t", {"temperature": 2.0}), (2, 3, 7), lambda: torch.randn(2, 3, 7)),
    ],
)
def test_loss_mean_is_the_sum_over_the_count(spec, prediction, target):
    """`Loss.mean` (torch's reduction="mean", the Trainer's one-micro-batch step) divides by the
    same count as (sum, count): ignored targets and label smoothing included; same gradients."""
    name, pred_ref, target_ref, args = spec
    torch.manual_seed(0)
    loss = make_loss(loss_spec(name, pred_ref, target_ref, **args), REGISTRY)
    batch = {"t": target()}
    scores = torch.randn(*prediction, requires_grad=True)
    total, count = loss({"p": scores}, batch)
    (by_sum,) = torch.autograd.grad(total / count, scores)
    value, mean_count = loss.mean({"p": scores}, batch)
    (by_mean,) = torch.autograd.grad(value, scores)
    assert int(mean_count) == int(count)
    torch.testing.assert_close(value, total / count)
    torch.testing.assert_close(by_mean, by_sum)


def test_loss_mean_with_nothing_counted_is_nan():
    """All targets ignored: no count to divide by (the Trainer takes the sum, 0, instead)."""
    loss = make_loss(loss_spec("cross_entropy", "p", "t"), REGISTRY)
    value, count = loss.mean({"p": torch.randn(3, 4)}, {"t": torch.full((3,), -100)})
    assert int(count) == 0 and math.isnan(value.item())


def test_loss_inputs_are_looked_up_in_outputs_and_batch():
    image, recon = torch.rand(3, 8), torch.rand(3, 8)
    # the target is a model input (in the batch); so may the prediction be
    loss = make_loss(loss_spec("mse", "recon", "image"), REGISTRY)
    torch.testing.assert_close(mean(loss, {"recon": recon}, {"image": image}), F.mse_loss(recon, image))
    swapped = make_loss(loss_spec("mse", "image", "recon"), REGISTRY)
    total, count = swapped({"recon": recon}, {"image": image})
    torch.testing.assert_close(total / count, F.mse_loss(image, recon))
    with pytest.raises(LookupError, match="needs a forward pass"):
        swapped.count({"image": image})
    with pytest.raises(KeyError, match="no tensor `recon`"):
        loss({}, {"image": image})


def test_a_gan_loss_has_a_criterion_on_tensors():
    loss = make_loss(LossSpec(kind="loss", name="bce_with_logits"), REGISTRY)
    p, y = torch.randn(4, 1), torch.ones(4, 1)
    total, count = loss.criterion(p, y)
    torch.testing.assert_close(total / count, F.binary_cross_entropy_with_logits(p, y))
    with pytest.raises(ValueError, match="names no inputs"):
        loss({"p": p}, {"y": y})


class TinyLM(nn.Module):
    def __init__(self, vocab: int = 13, width: int = 8):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.mix = nn.Linear(width, width)
        self.head = nn.Linear(width, vocab)

    def forward(self, tokens):
        return {"logits": self.head(torch.tanh(self.mix(self.embed(tokens))))}


def test_accumulating_sums_over_the_window_count_equals_the_whole_batch():
    torch.manual_seed(0)
    vocab, length = 13, 9
    lengths = [9, 3, 7, 1, 5, 9, 2, 6]  # 8 sequences, padded to 9
    tokens = torch.randint(1, vocab, (8, length))
    target = torch.randint(1, vocab, (8, length))
    for i, n in enumerate(lengths):
        tokens[i, n:] = 0
        target[i, n:] = -100
    batch = {"tokens": tokens, "target": target}
    loss = make_loss(loss_spec("cross_entropy", "logits", "target"), REGISTRY)

    model = TinyLM(vocab)
    whole_sum, whole_count = loss(model(tokens), batch)
    whole = whole_sum / whole_count
    whole.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    torch.testing.assert_close(
        whole, F.cross_entropy(model(tokens)["logits"].reshape(-1, vocab), target.reshape(-1), ignore_index=-100)
    )

    model.zero_grad()
    micro = [{k: v[i : i + 1] for k, v in batch.items()} for i in range(8)]
    total = sum(loss.count(m) for m in micro)  # before any forward pass
    assert total.item() == sum(lengths) == whole_count.item()
    accumulated = torch.zeros(())
    for m in micro:
        part, _ = loss(model(m["tokens"]), m)
        (part / total).backward()
        accumulated += part.detach() / total
    torch.testing.assert_close(accumulated, whole.detach())
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], msg=name)

    # the mean of micro-batch means would weigh short sequences up: not the same
    with torch.no_grad():
        means = sum(float(loss(model(m["tokens"]), m)[0] / loss.count(m)) for m in micro) / 8
    assert abs(means - whole.item()) > 1e-3


@pytest.mark.parametrize(
    "values, none_ignored",
    [
        ([torch.tensor([0, 3, 9]), torch.tensor([1, 2])], True),
        ([torch.tensor([0, 3, 9]), torch.tensor([1, -100])], False),  # an ignored target in one split
        ([torch.tensor([0, 3, 9]), None], False),  # a split that cannot tell
        ([], False),
        ([torch.tensor([0, 200, 255], dtype=torch.uint8)], True),  # -100 does not fit uint8 tokens
    ],
)
def test_cross_entropy_counts_without_a_tensor_op_once_no_target_is_ignored(values, none_ignored):
    loss = make_loss(loss_spec("cross_entropy", "logits", "label"), REGISTRY)
    loss.criterion.know_targets(values)
    assert loss.criterion.none_ignored is none_ignored
    logits, label = torch.randn(5, 10), torch.tensor([1, 0, 9, 4, 4])
    total, count = loss({"logits": logits}, {"label": label})
    mean, mean_count = loss.mean({"logits": logits}, {"label": label})
    assert isinstance(count, int) is none_ignored and int(count) == int(mean_count) == 5
    torch.testing.assert_close(total / count, F.cross_entropy(logits, label))
    torch.testing.assert_close(mean, total / count)
    if not none_ignored:  # still counted per batch: an ignored target is left out
        assert int(loss.count({"label": torch.tensor([1, -100, 2])})) == 2


def test_accuracy_without_ignored_targets_counts_every_one():
    loss = make_loss(loss_spec("cross_entropy"), REGISTRY)
    accuracy, masked = make_metric(spec("metric", "accuracy"), REGISTRY, loss=loss), metric("accuracy")
    loss.criterion.know_targets([LABEL])
    for m in (accuracy, masked):
        m.update({"logits": LOGITS}, {"label": LABEL}, None, None)
    assert accuracy.compute() == masked.compute() == 0.5 and accuracy.counted == 4


# ---- metrics -----------------------------------------------------------------------------

LOGITS = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 0.5], [0.0, 0.2, 5.0]])
LABEL = torch.tensor([0, 1, 2, 1])


def metric(name: str, loss: LossSpec | None = None, **args):
    return make_metric(spec("metric", name, **args), REGISTRY, loss=loss or loss_spec("cross_entropy"))


def test_accuracy():
    accuracy = metric("accuracy")
    assert (accuracy.name, accuracy.higher_is_better) == ("accuracy", True)
    assert math.isnan(accuracy.compute())
    accuracy.update({"logits": LOGITS}, {"label": LABEL}, None, None)  # rows 0, 1 right
    assert accuracy.compute() == 0.5
    accuracy.update({"logits": LOGITS[:2]}, {"label": LABEL[:2]}, None, None)
    assert accuracy.compute() == 4 / 6
    accuracy.reset()
    accuracy.update({"logits": LOGITS[2:]}, {"label": torch.tensor([0, 2])}, None, None)
    assert accuracy.compute() == 1.0


def test_token_accuracy_skips_ignored_targets():
    accuracy = metric("accuracy", loss_spec("cross_entropy", "logits", "target", ignore_index=0))
    logits = LOGITS.reshape(2, 2, 3)
    target = torch.tensor([[0, 1], [2, 2]])  # first token ignored; then right, wrong, right
    accuracy.update({"logits": logits}, {"target": target}, None, None)
    assert accuracy.compute() == 2 / 3


def test_accuracy_of_binary_predictions():
    accuracy = metric("accuracy", loss_spec("bce_with_logits", "logit", "label"))
    accuracy.update(
        {"logit": torch.tensor([[1.5], [-0.5], [0.2], [-2.0]])}, {"label": torch.tensor([1, 1, 0, 0])}, 0, 0
    )
    assert accuracy.compute() == 0.5
    accuracy = metric("accuracy", loss_spec("bce", "p", "label"))
    accuracy.update({"p": torch.tensor([0.9, 0.4, 0.6])}, {"label": torch.tensor([1.0, 0.0, 0.0])}, 0, 0)
    assert accuracy.compute() == 2 / 3


def test_top_k():
    top2 = metric("top_k", k=2)
    assert (top2.name, top2.higher_is_better) == ("top_k", True)
    top2.update({"logits": LOGITS}, {"label": LABEL}, None, None)  # rows 0, 1, 2 (0.5 second), 3 (0.2 second)
    assert top2.compute() == 1.0
    top1 = metric("top_k", k=1)
    top1.update({"logits": LOGITS}, {"label": LABEL}, None, None)
    assert top1.compute() == 0.5
    with pytest.raises(ValueError, match="only 3 classes"):
        metric("top_k", k=4).update({"logits": LOGITS}, {"label": LABEL}, None, None)


def test_perplexity_is_exp_of_the_mean_loss():
    perplexity = metric("perplexity")
    assert (perplexity.name, perplexity.higher_is_better) == ("perplexity", False)
    loss = make_loss(loss_spec("cross_entropy"), REGISTRY)
    for rows in (slice(0, 3), slice(3, 4)):
        outputs, batch = {"logits": LOGITS[rows]}, {"label": LABEL[rows]}
        perplexity.update(outputs, batch, *loss(outputs, batch))
    assert perplexity.compute() == pytest.approx(math.exp(F.cross_entropy(LOGITS, LABEL).item()), rel=1e-6)
    perplexity.reset()
    perplexity.update({}, {}, torch.tensor(6.0), torch.tensor(4))
    assert perplexity.compute() == pytest.approx(math.exp(1.5))


def test_metrics_that_read_the_prediction_need_the_loss():
    with pytest.raises(ValueError, match="needs the loss's prediction and target"):
        make_metric(spec("metric", "accuracy"), REGISTRY)
    assert make_metric(spec("metric", "perplexity"), REGISTRY).name == "perplexity"


# ---- regularizers ------------------------------------------------------------------------


def test_penalties_cover_trainable_weights_with_more_than_one_dimension():
    model = tiny()
    weights = [model.fc1.weight, model.fc2.weight]
    l1 = make_regularizer(spec("regularizer", "l1", weight=0.01), REGISTRY)
    l2 = make_regularizer(spec("regularizer", "l2", weight=0.001), REGISTRY)
    torch.testing.assert_close(l1(model), 0.01 * sum(w.abs().sum() for w in weights))
    torch.testing.assert_close(l2(model), 0.001 * sum(w.square().sum() for w in weights))
    l2(model).backward()
    torch.testing.assert_close(model.fc1.weight.grad, 0.002 * model.fc1.weight.detach())
    assert model.fc1.bias.grad is None and model.norm.weight.grad is None
    model.fc1.weight.requires_grad_(False)
    torch.testing.assert_close(l1(model), 0.01 * model.fc2.weight.abs().sum())
    assert l1(nn.LayerNorm(4)).item() == 0.0
