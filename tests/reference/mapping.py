"""How a built modelspec module corresponds to its hand-written reference.

For each spec model (by its base declaration, so `model Tiny = GPT2(...)`
maps like GPT2) a `Reference` gives:

- `build(hyperparameters)`: the reference module, configured from the spec
  model's hyperparameters;
- `state_dict(tensors)`: modelspec's tensors renamed (and fused, where the
  reference fuses) into the reference's names. It takes any name -> tensor
  dict keyed like the modelspec module's state_dict, so it maps weights and
  gradients alike, and refuses a name it has no rule for.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from . import bert, cnn, dcgan, gpt, llama, mlp, resnet, transformer, vgg

Tensors = Mapping[str, torch.Tensor]
Rule = tuple[str, str | Callable[[re.Match], str]]


def rename(tensors: Tensors, rules: list[Rule]) -> dict[str, torch.Tensor]:
    """Each name through the first rule whose pattern matches it in full."""
    out = {}
    for name, tensor in tensors.items():
        for pattern, target in rules:
            m = re.fullmatch(pattern, name)
            if m:
                out[target(m) if callable(target) else m.expand(target)] = tensor
                break
        else:
            raise KeyError(f"no reference name for modelspec parameter {name!r}")
    return out


@dataclass(frozen=True)
class Reference:
    build: Callable[[dict], nn.Module]
    state_dict: Callable[[Tensors], dict[str, torch.Tensor]]


# ---- MLP, CNN, DCGAN: Sequential stacks ---------------------------------------------------

MLP_RULES = [
    (r"fc1\.(weight|bias)", r"linear_relu_stack.0.\1"),
    (r"fc2\.(weight|bias)", r"linear_relu_stack.2.\1"),
]

CNN_RULES = [
    (r"conv1\.(weight|bias)", r"features.0.\1"),
    (r"conv2\.(weight|bias)", r"features.3.\1"),
    (r"fc1\.(weight|bias)", r"classifier.1.\1"),
    (r"fc2\.(weight|bias)", r"classifier.3.\1"),
]

# batchnorm tensors: weight, bias, running_mean, running_var, num_batches_tracked
_ANY = r"(\w+)"

GENERATOR_RULES = [
    (rf"conv_transpose2d\.{_ANY}", r"main.0.\1"),
    (rf"batchnorm2d\.{_ANY}", r"main.1.\1"),
    (rf"conv_transpose2d_1\.{_ANY}", r"main.3.\1"),
    (rf"batchnorm2d_1\.{_ANY}", r"main.4.\1"),
    (rf"conv_transpose2d_2\.{_ANY}", r"main.6.\1"),
]

DISCRIMINATOR_RULES = [
    (rf"conv2d\.{_ANY}", r"main.0.\1"),
    (rf"conv2d_1\.{_ANY}", r"main.2.\1"),
    (rf"batchnorm2d\.{_ANY}", r"main.3.\1"),
    (rf"conv2d_2\.{_ANY}", r"main.5.\1"),
]

# ---- ResNet and VGG: torchvision's layout --------------------------------------------------

RESNET_RULES = [
    (rf"(conv1|bn1|fc)\.{_ANY}", r"\1.\2"),
    (rf"layer(\d)_(\d)\.(conv1|bn1|conv2|bn2)\.{_ANY}", r"layer\1.\2.\3.\4"),
    (rf"layer(\d)_(\d)\.down_conv\.{_ANY}", r"layer\1.\2.downsample.0.\3"),
    (rf"layer(\d)_(\d)\.down_bn\.{_ANY}", r"layer\1.\2.downsample.1.\3"),
]


def _vgg_conv_indices(cfg) -> list[list[int]]:
    """Per stage (ending at each "M"), the index in `features` of each convolution."""
    stages, current, index = [], [], 0
    for v in cfg:
        if v == "M":
            stages.append(current)
            current, index = [], index + 1
        else:
            current.append(index)
            index += 2  # the convolution and its ReLU
    return stages


_VGG_CONVS = _vgg_conv_indices(vgg.CFG_D)


def _vgg_conv(m: re.Match) -> str:
    stage = int(m[1] or 0)  # modelspec names the stages convstage, convstage_1, ...
    return f"features.{_VGG_CONVS[stage][int(m[2])]}.{m[3]}"


VGG_RULES = [
    (r"convstage(?:_(\d+))?\.conv\.(\d+)\.conv2d\.(weight|bias)", _vgg_conv),
    (r"fc1\.(weight|bias)", r"classifier.0.\1"),
    (r"fc2\.(weight|bias)", r"classifier.3.\1"),
    (r"fc3\.(weight|bias)", r"classifier.6.\1"),
]

# ---- transformers -----------------------------------------------------------------------------

_W = r"(weight|bias)"


def gpt_state_dict(tensors: Tensors) -> dict[str, torch.Tensor]:
    """modelspec's separate q, k, v become nanoGPT's c_attn, concatenated in that order."""
    parts: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    rest = {}
    for name, tensor in tensors.items():
        m = re.fullmatch(rf"h\.(\d+)\.attn\.([qkv])\.{_W}", name)
        if m:
            parts.setdefault((m[1], m[3]), {})[m[2]] = tensor
        else:
            rest[name] = tensor
    out = {}
    for (layer, kind), qkv in parts.items():
        if sorted(qkv) != ["k", "q", "v"]:
            raise KeyError(f"layer {layer}: {kind} of q, k and v needed to fuse c_attn, got {sorted(qkv)}")
        out[f"transformer.h.{layer}.attn.c_attn.{kind}"] = torch.cat([qkv["q"], qkv["k"], qkv["v"]], dim=0)
    rules = [
        (r"(wte|wpe)\.weight", r"transformer.\1.weight"),
        (rf"h\.(\d+)\.(ln_1|ln_2)\.{_W}", r"transformer.h.\1.\2.\3"),
        (rf"h\.(\d+)\.attn\.proj\.{_W}", r"transformer.h.\1.attn.c_proj.\2"),
        (rf"h\.(\d+)\.mlp\.fc\.{_W}", r"transformer.h.\1.mlp.c_fc.\2"),
        (rf"h\.(\d+)\.mlp\.proj\.{_W}", r"transformer.h.\1.mlp.c_proj.\2"),
        (rf"ln_f\.{_W}", r"transformer.ln_f.\1"),
        (r"lm_head\.weight", "lm_head.weight"),
    ]
    out.update(rename(rest, rules))
    return out


_BERT_QKV = {"q": "query", "k": "key", "v": "value"}

BERT_RULES = [
    (r"(word_embeddings|position_embeddings|token_type_embeddings)\.weight", r"embeddings.\1.weight"),
    (rf"ln\.{_W}", r"embeddings.LayerNorm.\1"),
    (
        rf"layer\.(\d+)\.attention\.([qkv])\.{_W}",
        lambda m: f"encoder.layer.{m[1]}.attention.self.{_BERT_QKV[m[2]]}.{m[3]}",
    ),
    (rf"layer\.(\d+)\.attention\.proj\.{_W}", r"encoder.layer.\1.attention.output.dense.\2"),
    (rf"layer\.(\d+)\.ln_1\.{_W}", r"encoder.layer.\1.attention.output.LayerNorm.\2"),
    (rf"layer\.(\d+)\.mlp\.fc\.{_W}", r"encoder.layer.\1.intermediate.dense.\2"),
    (rf"layer\.(\d+)\.mlp\.proj\.{_W}", r"encoder.layer.\1.output.dense.\2"),
    (rf"layer\.(\d+)\.ln_2\.{_W}", r"encoder.layer.\1.output.LayerNorm.\2"),
    (rf"pooler\.{_W}", r"pooler.dense.\1"),
]

_LINEARS = {"q": 0, "k": 1, "v": 2, "proj": 3}  # The Annotated Transformer's W^Q, W^K, W^V, W^O
_ATTENTION = {"attn": "self_attn", "self_attn": "self_attn", "cross_attn": "src_attn"}


def _attention(m: re.Match) -> str:
    return f"{m[1]}.layers.{m[2]}.{_ATTENTION[m[3]]}.linears.{_LINEARS[m[4]]}.{m[5]}"


def _norm(m: re.Match) -> str:
    return f"{m[1]}.layers.{m[2]}.sublayer.{int(m[3]) - 1}.norm.{m[4]}"  # ln_1 is the first sub-layer's


TRANSFORMER_RULES = [
    (r"(src_embed|tgt_embed)\.weight", r"\1.0.lut.weight"),
    (r"generator\.weight", "generator.weight"),
    (rf"(encoder|decoder)\.(\d+)\.(attn|self_attn|cross_attn)\.(q|k|v|proj)\.{_W}", _attention),
    (rf"(encoder|decoder)\.(\d+)\.ln_(\d)\.{_W}", _norm),
    (rf"(encoder|decoder)\.(\d+)\.feed_forward\.fc\.{_W}", r"\1.layers.\2.feed_forward.w_1.\3"),
    (rf"(encoder|decoder)\.(\d+)\.feed_forward\.proj\.{_W}", r"\1.layers.\2.feed_forward.w_2.\3"),
]

_LLAMA_ATTENTION = {"wq": "q_proj", "wk": "k_proj", "wv": "v_proj", "wo": "o_proj"}
_LLAMA_MLP = {"w1": "gate_proj", "w3": "up_proj", "w2": "down_proj"}

# Meta's names (specs/llama_tiny.mspec) to Hugging Face's.
LLAMA_RULES = [
    (r"tok_embeddings\.weight", "model.embed_tokens.weight"),
    (r"layers\.(\d+)\.attention_norm\.weight", r"model.layers.\1.input_layernorm.weight"),
    (r"layers\.(\d+)\.ffn_norm\.weight", r"model.layers.\1.post_attention_layernorm.weight"),
    (
        r"layers\.(\d+)\.attention\.(wq|wk|wv|wo)\.weight",
        lambda m: f"model.layers.{m[1]}.self_attn.{_LLAMA_ATTENTION[m[2]]}.weight",
    ),
    (
        r"layers\.(\d+)\.feed_forward\.(w1|w2|w3)\.weight",
        lambda m: f"model.layers.{m[1]}.mlp.{_LLAMA_MLP[m[2]]}.weight",
    ),
    (r"norm\.weight", "model.norm.weight"),
    (r"output\.weight", "lm_head.weight"),
]

# ---- the table -----------------------------------------------------------------------------------


def _gpt(hp: dict) -> nn.Module:
    config = gpt.GPTConfig(
        block_size=hp["ctx"],
        vocab_size=hp["vocab"],
        n_layer=hp["layers"],
        n_head=hp["heads"],
        n_embd=hp["d"],
        dropout=hp["p"],
    )
    return gpt.GPT(config)


def _bert(hp: dict) -> nn.Module:
    return bert.BertModel(
        bert.BertConfig(
            vocab_size=hp["vocab"],
            hidden_size=hp["d"],
            num_hidden_layers=hp["layers"],
            num_attention_heads=hp["heads"],
            intermediate_size=hp["ff"],
            hidden_dropout_prob=hp["p"],
            attention_probs_dropout_prob=hp["p"],
            max_position_embeddings=hp["ctx"],
            type_vocab_size=hp["types"],
        )
    )


def _transformer(hp: dict) -> nn.Module:
    return transformer.EncoderDecoder(
        transformer.TransformerConfig(
            src_vocab=hp["src_vocab"],
            tgt_vocab=hp["tgt_vocab"],
            d_model=hp["d"],
            n_heads=hp["heads"],
            d_ff=hp["ff"],
            n_layers=hp["layers"],
            dropout=hp["p"],
            max_len=hp["ctx"],
        )
    )


def _llama(hp: dict) -> nn.Module:
    return llama.LlamaForCausalLM(
        llama.LlamaConfig(
            vocab_size=hp["vocab"],
            hidden_size=hp["d"],
            intermediate_size=llama.llama_intermediate_size(hp["d"], hp["multiple_of"]),
            num_hidden_layers=hp["n_layers"],
            num_attention_heads=hp["heads"],
            max_position_embeddings=hp["ctx"],
            rms_norm_eps=hp["eps"],
        )
    )


def _renamer(rules: list[Rule]) -> Callable[[Tensors], dict[str, torch.Tensor]]:
    return lambda tensors: rename(tensors, rules)


REFERENCES: dict[str, Reference] = {
    "MLP": Reference(lambda hp: mlp.NeuralNetwork(hidden=hp["hidden"], num_classes=hp["classes"]), _renamer(MLP_RULES)),
    "CNN": Reference(lambda hp: cnn.Net(num_classes=hp["classes"]), _renamer(CNN_RULES)),
    "Generator": Reference(lambda hp: dcgan.Generator(nz=hp["z"], ngf=hp["width"]), _renamer(GENERATOR_RULES)),
    "Discriminator": Reference(lambda hp: dcgan.Discriminator(ndf=hp["width"]), _renamer(DISCRIMINATOR_RULES)),
    "ResNet18": Reference(lambda hp: resnet.resnet18(num_classes=hp["classes"]), _renamer(RESNET_RULES)),
    "VGG16": Reference(lambda hp: vgg.vgg16(num_classes=hp["classes"], dropout=hp["p"]), _renamer(VGG_RULES)),
    "BertBase": Reference(_bert, _renamer(BERT_RULES)),
    "GPT2": Reference(_gpt, gpt_state_dict),
    "GPTTiny": Reference(_gpt, gpt_state_dict),  # specs/gpt_tiny.mspec: GPT-2's layout, declared anew
    "Transformer": Reference(_transformer, _renamer(TRANSFORMER_RULES)),
    "LlamaTiny": Reference(_llama, _renamer(LLAMA_RULES)),  # specs/llama_tiny.mspec (plugins swiglu, lion)
}


def reference_for(model) -> Reference:
    """The reference of an IR model (a variant maps like the model it varies)."""
    return REFERENCES[model.base]
