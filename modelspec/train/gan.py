"""The `gan` regime: a generator and a discriminator trained in turn.

Each step, on a batch of real data and a batch of noise:

    discriminator: loss(D(real), 1) + loss(D(G(noise)), 0), its optimizer steps
    generator:     loss(D(G(noise)), 1), its optimizer steps

(the non-saturating objective of Goodfellow et al. 2014, as in DCGAN). The
loss is the regime's `loss` (`bce` on probabilities or `bce_with_logits`);
each role has its own optimizer and schedule (one declared for both is
copied). With `samples grid(rows, cols, every=N)`, a grid of images from a
fixed noise batch is written to `samples/epoch-NNN.png` every N epochs, so
progress can be seen. Checkpoints hold both models and both optimizers;
resume continues exactly.
"""

from __future__ import annotations

from pathlib import Path

import torch

from modelspec.train import checkpoint as ckpt
from modelspec.train.loop import (
    Progress,
    Trainer,
    TrainError,
    _outputs,
    build_dtype,
    load_optimizer_state,
    restoring,
    torch_build,
)


def _single_output(model_ir, result) -> torch.Tensor:
    outputs = _outputs(model_ir, result)
    return next(iter(outputs.values()))


class GanTrainer(Trainer):
    def expected_spec_hash(self) -> str | None:
        gan = self.program.gans.get(self.regime.model.name)
        if gan is None or gan.generator not in self.program.models or gan.discriminator not in self.program.models:
            return None
        return ckpt.ir_hash(self.program.models[gan.generator]) + ckpt.ir_hash(self.program.models[gan.discriminator])

    def prepare(self) -> None:
        from modelspec.train.builders import layer_kinds, make_loss, make_optimizer, make_schedule
        from modelspec.train.data import DataError, input_bounds, make_data, make_loaders

        build = torch_build()

        if self.regime.distributed is not None:
            raise TrainError(
                f"`distributed {self.regime.distributed.name}` is not supported for gan regimes: "
                "remove the setting to train in one process"
            )
        self.join_processes()  # refuses a torchrun launch of a regime that declares no `distributed`
        gan = self.program.gans.get(self.regime.model.name)
        if gan is None:
            raise TrainError(f"regime `{self.regime.name}` names gan `{self.regime.model.name}`, which was not built")
        self.gan = gan
        self.generator_ir = self.program.models[gan.generator]
        self.discriminator_ir = self.program.models[gan.discriminator]
        self.model_ir = self.discriminator_ir
        self.spec_hash = ckpt.ir_hash(self.generator_ir) + ckpt.ir_hash(self.discriminator_ir)
        (self.noise_name, noise_type), *rest = self.generator_ir.graph.inputs.items()
        if rest:
            raise TrainError(f"generator `{gan.generator}` must take one input (its noise), it takes {1 + len(rest)}")
        self.noise_shape = [d.value if d.is_const else None for d in noise_type.shape]
        if any(d is None for d in self.noise_shape[1:]):
            raise TrainError(
                f"the noise input `{self.noise_name}` of `{gan.generator}` needs known sizes, is {noise_type}"
            )
        base = self.spec_folder()
        try:
            graph = self.discriminator_ir.graph
            self.data = make_data(
                self.regime.data, dict(graph.inputs), self.seed, base=base, bounds=input_bounds(graph)
            )
        except DataError as exc:
            raise TrainError(str(exc)) from None
        self.data_args = self.regime.data.parsed()
        self.make_loaders = make_loaders
        # Both in one dtype (fakes go into the discriminator): the one their inputs declare (build_dtype)
        dtypes = {
            role: build_dtype(ir)
            for role, ir in (("generator", self.generator_ir), ("discriminator", self.discriminator_ir))
        }
        if dtypes["generator"] != dtypes["discriminator"]:
            raise TrainError(
                f"the generator's inputs declare {dtypes['generator'] or 'float32'} and the discriminator's "
                f"{dtypes['discriminator'] or 'float32'}: a gan trains both in one dtype"
            )
        dtype = dtypes["generator"]
        self.noise_dtype = getattr(torch, dtype) if dtype else torch.float32
        self.generator = build(self.program, gan.generator, device=self.device, seed=self.seed, dtype=dtype)
        self.discriminator = build(self.program, gan.discriminator, device=self.device, seed=self.seed + 1, dtype=dtype)
        self.model = torch.nn.ModuleDict({"generator": self.generator, "discriminator": self.discriminator})
        self.optimizers, self.schedules = {}, {}
        self.batches_per_epoch = len(self.make_loaders(self.data, self.data_args, self.seed)[0])
        self.steps_per_epoch = self.batches_per_epoch
        self.regime_steps = self.total_steps = self.regime.steps or self.regime.epochs * self.steps_per_epoch
        if self.options.max_steps is not None:
            self.total_steps = min(self.total_steps, self.options.max_steps)
        for role, module in (("generator", self.generator), ("discriminator", self.discriminator)):
            spec = self.regime.optimizer[role] if isinstance(self.regime.optimizer, dict) else self.regime.optimizer
            try:
                self.optimizers[role] = make_optimizer(spec, list(module.named_parameters()), kinds=layer_kinds(module))
            except ValueError as exc:  # `fused=true` where it cannot run
                raise TrainError(f"optimizer `{spec.name}` of the {role}: {exc}") from None
            schedule = self.regime.schedule
            schedule = schedule.get(role) if isinstance(schedule, dict) else schedule
            try:
                self.schedules[role] = make_schedule(schedule, self.optimizers[role], self.regime_steps)
            except ValueError as exc:
                raise TrainError(f"schedule of the {role}: {exc}") from None
        self.criterion = make_loss(self.regime.loss).criterion
        self.metrics, self.regularizers = [], []
        self.fixed_noise = None
        if self.regime.samples is not None:
            count = self.regime.samples.rows * self.regime.samples.cols
            generator = torch.Generator().manual_seed(self.seed + 12345)
            noise = torch.randn([count, *self.noise_shape[1:]], generator=generator)
            self.fixed_noise = noise.to(self.device, self.noise_dtype)
        self.place_data()

    # ---- state --------------------------------------------------------------------------

    def state(self, step: int, epoch: int, batch: int) -> ckpt.TrainingState:
        return ckpt.TrainingState(
            step=step,
            epoch=epoch,
            batch=batch,
            optimizers={role: opt.state_dict() for role, opt in self.optimizers.items()},
            schedulers={role: s.state_dict() for role, s in self.schedules.items()},
            rng=ckpt.capture_rng(),
            extra={"metrics": self.last_metrics},
        )

    def restore(self) -> tuple[int, int, int, list[str]]:
        path, refused = ckpt.latest_valid(self.checkpoints, self.spec_hash)
        if path is None:
            return 0, 0, 0, refused
        with restoring(path, "weights"):
            state = ckpt.load(path, self.model, self.spec_hash)
        for role in self.optimizers:
            with restoring(path, f"{role}'s optimizer state"):
                load_optimizer_state(self.optimizers[role], state.optimizers[role])
            with restoring(path, f"{role}'s schedule state"):
                self.schedules[role].load_state_dict(state.schedulers[role])
        with restoring(path, "training state"):
            ckpt.restore_rng(state.rng)
        self.last_metrics = state.extra.get("metrics", {})
        self.restored_log_bytes = state.log_bytes
        return state.step, state.epoch, state.batch, refused

    # ---- a step ---------------------------------------------------------------------------

    def learning_rate(self) -> float:
        """The generator's rate: what progress and the log report."""
        return self.optimizers["generator"].param_groups[0]["lr"]

    def loss_against(self, prediction: torch.Tensor, real: bool) -> torch.Tensor:
        target = torch.full_like(prediction, 1.0 if real else 0.0)
        total, count = self.criterion(prediction.float(), target.float())
        return total / count

    def check_finite(self, name: str, value: torch.Tensor, step: int) -> None:
        """Before the optimizer steps: a NaN or infinite loss leaves the weights as they were."""
        if not torch.isfinite(value):
            for optimizer in self.optimizers.values():
                optimizer.zero_grad(set_to_none=True)
            raise TrainError(f"the {name} is {value.item()} at step {step + 1}")

    def plain_step(self):
        return None  # every step is train_step's two updates

    def train_step(self, window: list[dict[str, torch.Tensor]], step: int) -> tuple[float, int]:
        self.generator.train()
        self.discriminator.train()
        batch = self.to_device(window[0])
        (real_name,) = self.discriminator_ir.graph.inputs
        real = batch[real_name]
        noise = torch.randn([real.shape[0], *self.noise_shape[1:]], device=self.device, dtype=self.noise_dtype)
        fake = _single_output(self.generator_ir, self.generator(noise))

        d_real = _single_output(self.discriminator_ir, self.discriminator(real))
        d_fake = _single_output(self.discriminator_ir, self.discriminator(fake.detach()))
        d_loss = self.loss_against(d_real, True) + self.loss_against(d_fake, False)
        self.check_finite("discriminator loss", d_loss, step)
        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        d_loss.backward()
        self.optimizers["discriminator"].step()

        g_loss = self.loss_against(_single_output(self.discriminator_ir, self.discriminator(fake)), True)
        self.check_finite("generator loss", g_loss, step)
        self.optimizers["generator"].zero_grad(set_to_none=True)
        g_loss.backward()
        self.optimizers["generator"].step()
        for schedule in self.schedules.values():
            schedule.step()
        self.last_losses = {"d_loss": d_loss.item(), "g_loss": g_loss.item(), "d_real": d_real.mean().item()}
        return g_loss.item(), real.shape[0]

    def after_evaluation(self, step, epoch, batch_index, val_loader, progress) -> bool:
        return False  # a gan has no validation loss; its samples show progress

    def run_epoch(self, step: int, epoch: int, position: int, progress: Progress):
        step, new_epoch, position, stopped = super().run_epoch(step, epoch, position, progress)
        if hasattr(self, "last_losses"):
            self.log.write({"step": step, "epoch": epoch, **self.last_losses})
            self.last_metrics = dict(self.last_losses)
        samples = self.regime.samples
        if samples is not None and new_epoch > epoch and new_epoch % samples.every == 0:
            self.write_samples(new_epoch)
        return step, new_epoch, position, stopped

    @torch.no_grad()
    def write_samples(self, epoch: int) -> Path:
        """A grid of images from the fixed noise, as PNG."""
        from PIL import Image

        self.generator.eval()
        images = _single_output(self.generator_ir, self.generator(self.fixed_noise)).float().cpu()
        rows, cols = self.regime.samples.rows, self.regime.samples.cols
        if images.dim() != 4:
            raise TrainError(f"samples: the generator's output is not images [B, C, H, W] but {list(images.shape)}")
        _, channels, height, width = images.shape
        low, high = images.min().item(), images.max().item()
        # tanh outputs lie in [-1, 1]; map what the generator gives onto 0..255
        span = (-1.0, 1.0) if low >= -1.0 and high <= 1.0 and low < 0 else (low, max(high, low + 1e-6))
        pixels = ((images - span[0]) / (span[1] - span[0])).clamp(0, 1).mul(255).round().to(torch.uint8)
        pad = 2
        grid = torch.zeros(channels, rows * (height + pad) + pad, cols * (width + pad) + pad, dtype=torch.uint8)
        for index in range(rows * cols):
            r, c = divmod(index, cols)
            top, left = pad + r * (height + pad), pad + c * (width + pad)
            grid[:, top : top + height, left : left + width] = pixels[index]
        array = grid.permute(1, 2, 0).numpy()
        image = Image.fromarray(array[:, :, 0] if channels == 1 else array[:, :, :3])
        folder = self.folder / "samples"
        folder.mkdir(exist_ok=True)
        path = folder / f"epoch-{epoch:03d}.png"
        tmp = folder / f".{path.name}.tmp"
        image.save(tmp, format="PNG")
        tmp.replace(path)
        self.log.write({"epoch": epoch, "event": "samples", "file": str(path.relative_to(self.folder))})
        return path
