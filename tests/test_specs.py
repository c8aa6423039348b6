"""Every shipped spec checks cleanly and has the parameter count of its reference."""

import json
from pathlib import Path

import pytest

import modelspec
from modelspec.summary import summarise

SPECS = Path(__file__).parent.parent / "specs"

EXPECTED = {
    "mlp_digits.mspec": ("MLP", 101_770),
    "cnn.mspec": ("CNN", 545_098),
    "resnet18.mspec": ("ResNet18", 11_689_512),
    "vgg16.mspec": ("VGG16", 138_357_544),
    "bert_base.mspec": ("BertBase", 109_482_240),
    "gpt2.mspec": ("GPT2", 124_439_808),
    "gpt3.mspec": ("GPT3", 174_604_259_328),
}


def transformer_base_parameters(vocab=37000, d=512, ff=2048, layers=6) -> int:
    """The 2017 base transformer counted by hand, independently of the spec."""
    attention = 4 * (d * d + d)  # q, k, v and output projections with biases
    feed_forward = (d * ff + ff) + (ff * d + d)
    norm = 2 * d
    encoder_layer = attention + feed_forward + 2 * norm
    decoder_layer = 2 * attention + feed_forward + 3 * norm
    embeddings = 2 * vocab * d  # source and target; the output head is tied to the target's
    return embeddings + layers * (encoder_layer + decoder_layer)


def llama_tiny_parameters(vocab=96, d=96, layers=3, multiple_of=32) -> int:
    """specs/llama_tiny.mspec counted by hand: LLaMA's layout, no biases, an untied head."""
    hidden = multiple_of * -(-int(2 * 4 * d / 3) // multiple_of)  # Meta's feed-forward width: 256 here
    attention = 4 * d * d  # wq, wk, wv, wo; rotary positions have no parameters
    feed_forward = 3 * d * hidden  # SwiGLU's w1, w2, w3
    norms = 2 * d  # RMSNorm scales before attention and feed-forward
    return vocab * d + layers * (attention + feed_forward + norms) + d + d * vocab  # + final norm and head


def test_llama_tiny_count_is_derived_independently():
    program = modelspec.load(SPECS / "llama_tiny.mspec")
    assert program.summary("LlamaTiny").parameters == llama_tiny_parameters()


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.mspec")), ids=lambda p: p.name)
def test_shipped_spec_checks_cleanly(path):
    assert modelspec.check(path) == []


@pytest.mark.parametrize("file,model,parameters", [(f, m, p) for f, (m, p) in EXPECTED.items()])
def test_parameter_counts(file, model, parameters):
    program = modelspec.load(SPECS / file)
    assert program.summary(model).parameters == parameters


def test_transformer_count_is_derived_independently():
    program = modelspec.load(SPECS / "transformer.mspec")
    assert program.summary("Transformer").parameters == transformer_base_parameters()


def test_dcgan_pair_types_agree():
    program = modelspec.load(SPECS / "dcgan.mspec")
    gan = program.gans["DCGAN"]
    generator = program.models[gan.generator].graph
    discriminator = program.models[gan.discriminator].graph
    (out,) = generator.output_types.values()
    (inp,) = discriminator.inputs.values()
    assert str(out) == str(inp) == "float[B, 1, 16, 16]"


def test_gpt2_output_head_is_tied_and_not_counted_twice():
    program = modelspec.load(SPECS / "gpt2.mspec")
    graph = program.models["GPT2"].graph
    head = graph.node("lm_head")
    assert head.params[0].tied_to == "wte.weight"
    assert head.params[0].shape == graph.node("wte").params[0].shape


def test_gpt3_repeat_is_counted_not_unrolled():
    program = modelspec.load(SPECS / "gpt3.mspec")
    (repeat,) = [n for n in program.models["GPT3"].graph.nodes if n.op == "repeat"]
    assert repeat.counts == [96]
    assert len(repeat.iterations) == 1


def test_gpt3_flops_count_attention_quadratic_term():
    program = modelspec.load(SPECS / "gpt3.mspec")
    short = summarise(program.models["GPT3"], {"tokens": (1, 1024)})
    long = summarise(program.models["GPT3"], {"tokens": (1, 2048)})
    # Linear layers alone would double; attention's T×T work makes it more than double.
    assert long.forward_flops > 2 * short.forward_flops


def test_cnn_regime_learns_the_digits(tmp_path):
    """specs/cnn.mspec's regime runs on a fresh machine (the digits ship with scikit-learn, as 3×32×32
    images) and learns: 30 of its steps take the loss well below chance (ln 10 = 2.30)."""
    from modelspec.train.loop import Options, Trainer

    program = modelspec.load(SPECS / "cnn.mspec")
    options = Options(out=tmp_path, max_steps=30, progress=False, log_every=1)
    result = Trainer(program, program.trains["cnn_digits"], options).run()
    records = [json.loads(line) for line in (result.folder / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert result.step == 30 and len(losses) == 30
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert first > 2.0 and last < 0.5 * first, losses
