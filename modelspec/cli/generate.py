"""`mspec generate FILE --checkpoint CKPT --prompt TEXT`: sample text from a language model."""

from __future__ import annotations

import math
from pathlib import Path

import click

from modelspec.cli.common import device_option, has_errors, report


def _sequence_input(model) -> tuple[str, str | None]:
    """The token input of a language model and the name of its length size. The model must take nothing
    else: sampling feeds it its own tokens, and has nothing to give another input (BERT's segments, an
    encoder-decoder's target)."""
    inputs = model.graph.inputs
    for name, t in inputs.items():
        if t.dtype.startswith("int") and t.rank == 2:
            others = [f"`{other}`" for other in inputs if other != name]
            if others:
                raise click.ClickException(
                    f"model `{model.name}` takes {', '.join(others)} besides its tokens `{name}`: `mspec generate` "
                    "feeds a language model its tokens alone, and has nothing to give the other inputs"
                )
            length = t.shape[1]
            symbol = str(length) if not length.is_const else None
            return name, symbol
    raise click.ClickException(
        f"model `{model.name}` has no token input (an integer tensor [B, T]): it is not a language model"
    )


def _finite(ctx: click.Context, param: click.Parameter, value: float) -> float:
    # FloatRange lets NaN through (every comparison with it is false), and an infinite temperature
    # makes every probability NaN.
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value


def _shape_mismatches(module, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """`name [checkpoint shape] in the checkpoint, [model shape] in the model` for each tensor both hold
    with different shapes, in the model's order."""
    out = []
    for key, tensor in module.state_dict().items():
        if key in shapes and shapes[key] != tuple(tensor.shape):
            out.append(f"{key} {list(shapes[key])} in the checkpoint, {list(tensor.shape)} in the model")
    return out


def _context(model, symbol: str | None) -> int | None:
    from modelspec.summary import _upper_bound, constraints

    if symbol is None:
        return None
    return _upper_bound(symbol, constraints(model.graph), {})


def _checkpoint_files(path: Path) -> tuple[Path, Path | None]:
    if path.is_dir():
        weights = path / "model.safetensors"
        tokenizer = path / "tokenizer.json"
        if not weights.is_file():
            raise click.BadParameter(f"{path} holds no model.safetensors", param_hint="--checkpoint")
        return weights, tokenizer if tokenizer.is_file() else None
    if not path.is_file():
        raise click.BadParameter(f"{path} does not exist", param_hint="--checkpoint")
    beside = path.with_name("tokenizer.json")
    return path, beside if beside.is_file() else None


@click.command("generate")
@click.argument("file", type=click.Path(path_type=str))
@click.option(
    "--checkpoint",
    "checkpoint",
    required=True,
    type=click.Path(path_type=Path),
    help="weights: a .safetensors file or a checkpoint folder",
)
@click.option("--prompt", required=True, help="the text to continue")
@click.option("--model", help="the model (default: the last one declared in FILE)")
@click.option("--max-new-tokens", default=100, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option(
    "--temperature", default=1.0, show_default=True, type=click.FloatRange(min=0.0, min_open=True), callback=_finite
)
@click.option("--top-k", type=click.IntRange(1), help="sample only among the k most likely tokens")
@click.option("--greedy", is_flag=True, help="always take the most likely token")
@click.option("--samples", default=1, show_default=True, type=click.IntRange(1, 1024), help="continuations to draw")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default="cpu", show_default=True, callback=device_option, help="cpu, cuda, cuda:1, ...")
def generate_command(
    file, checkpoint, prompt, model, max_new_tokens, temperature, top_k, greedy, samples, seed, device
):
    """Continue PROMPT with a language model of FILE and its trained weights."""
    from modelspec.api import compile_program
    from modelspec.cli.compile import pick_model
    from modelspec.diagnostics import CompileError

    program, diagnostics, sources = compile_program(Path(file))
    if has_errors(diagnostics):
        report(diagnostics, sources)
        raise SystemExit(1)
    name = pick_model(program, file, model)
    model_ir = program.models[name]
    _, symbol = _sequence_input(model_ir)
    context = _context(model_ir, symbol) or len(prompt.encode("utf-8")) + max_new_tokens

    import torch
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_model

    from modelspec.api import backend
    from modelspec.train.text_tokenizers import TokenizerError, tokenizer_from_json
    from modelspec_torch.generate import Tokenizer, sample

    try:
        build = backend("torch").build  # through the plugin registry, as any backend
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None

    torch_device = torch.device(device)  # checked by device_option
    weights, tokenizer_file = _checkpoint_files(checkpoint)
    try:
        with safe_open(str(weights), framework="pt") as handle:
            metadata = handle.metadata() or {}
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except (SafetensorError, OSError) as exc:
        raise click.BadParameter(
            f"{weights} is not a readable safetensors file ({exc})", param_hint="--checkpoint"
        ) from None
    try:
        module = build(program, name, device=torch_device)
    except CompileError as exc:  # E0601-E0604: the backend refuses the model, or it cannot fit the device
        report(exc.diagnostics, sources)
        raise SystemExit(1) from None
    try:
        if "modelspec.tokenizer" in metadata:
            tokenizer = tokenizer_from_json(metadata["modelspec.tokenizer"])
        elif tokenizer_file is not None:
            tokenizer = _tokenizer_beside(tokenizer_file)
        else:
            tokenizer = Tokenizer("byte")
    except (TokenizerError, ValueError, KeyError, OSError) as exc:
        where = "its metadata" if "modelspec.tokenizer" in metadata else str(tokenizer_file)
        raise click.ClickException(f"{weights}: the tokenizer in {where} cannot be read ({exc})") from None
    vocab = module_vocab(module)
    if vocab is not None and tokenizer.size > vocab:
        raise click.ClickException(
            f"{weights} does not say how to tokenize text (no tokenizer in its metadata or beside it), and the "
            f"model's vocabulary ({vocab}) is too small for bytes"
        )
    # Shapes before loading: load_model would raise on the first mismatch, with a traceback's text.
    mismatched = _shape_mismatches(module, shapes)
    if mismatched:
        listed = "; ".join(mismatched[:3]) + (f"; and {len(mismatched) - 3} more" if len(mismatched) > 3 else "")
        raise click.ClickException(
            f"{weights} does not fit model `{name}`: {len(mismatched)} tensor{'s' if len(mismatched) > 1 else ''} "
            f"differ in shape ({listed}); is it a checkpoint of another spec or of other sizes?"
        )
    missing, unexpected = load_model(module, str(weights), strict=False, device=str(torch_device))
    if missing or unexpected:
        detail = []
        if missing:
            detail.append("missing " + ", ".join(sorted(missing)[:5]) + (" ..." if len(missing) > 5 else ""))
        if unexpected:
            detail.append("unexpected " + ", ".join(sorted(unexpected)[:5]) + (" ..." if len(unexpected) > 5 else ""))
        raise click.ClickException(f"{weights} does not fit model `{name}`: {'; '.join(detail)}")
    try:
        prompt_ids = tokenizer.encode(prompt)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--prompt") from None
    if not prompt_ids:
        raise click.BadParameter("the prompt is empty", param_hint="--prompt")
    results = sample(
        module,
        prompt_ids,
        max_new_tokens,
        context=context,
        greedy=greedy,
        temperature=temperature,
        top_k=top_k,
        samples=samples,
        seed=seed,
    )
    for i, ids in enumerate(results):
        if samples > 1:
            click.echo(f"--- sample {i + 1}")
        click.echo(tokenizer.decode(ids))


def _tokenizer_beside(path: Path):
    """`tokenizer.json` beside the weights: modelspec's own (`{"kind": ...}`), or a HuggingFace
    `tokenizers` file."""
    import json

    from modelspec.train.text_tokenizers import HuggingFaceTokenizer, tokenizer_from_json

    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    if isinstance(data, dict) and "kind" in data:
        return tokenizer_from_json(text)
    return HuggingFaceTokenizer(text, source=str(path))


def module_vocab(module) -> int | None:
    """The size of the first embedding table: the vocabulary of a language model."""
    import torch

    for m in module.modules():
        if isinstance(m, torch.nn.Embedding):
            return m.num_embeddings
    return None
