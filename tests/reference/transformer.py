"""The encoder-decoder Transformer of "Attention Is All You Need" (Vaswani et al., 2017).

Laid out as The Annotated Transformer lays it out (`linears` for the four
attention projections, `sublayer` connections, `lut` embeddings), but with
the paper's post-norm sub-layers: LayerNorm(x + Dropout(Sublayer(x))). The
output projection is tied to the target embedding. Attention is written out
with nn.Linear projections; the position table is computed in float64 from
the paper's formula. Weights are copied in by the tests.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class TransformerConfig:
    src_vocab: int = 37000  # shared BPE vocabulary (en-de)
    tgt_vocab: int = 37000
    d_model: int = 512
    n_heads: int = 8
    d_ff: int = 2048
    n_layers: int = 6  # N, in both stacks
    dropout: float = 0.1  # P_drop
    max_len: int = 512  # rows of the position table


def attention(query, key, value, mask=None, dropout=None):
    """Scaled dot-product attention (equation 1); mask == False hides a key."""
    d_k = query.size(-1)
    scores = torch.matmul(query, key.transpose(-2, -1)) / math.sqrt(d_k)  # (B, h, T, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    p_attn = F.softmax(scores, dim=-1)
    if dropout is not None:
        p_attn = dropout(p_attn)
    return torch.matmul(p_attn, value)  # (B, h, T, d_k)


class MultiHeadedAttention(nn.Module):
    def __init__(self, h: int, d_model: int, dropout: float = 0.1):
        super().__init__()
        if d_model % h != 0:
            raise ValueError(f"d_model={d_model} is not a multiple of h={h}")
        self.d_k = d_model // h
        self.h = h
        # W^Q, W^K, W^V and W^O
        self.linears = nn.ModuleList([nn.Linear(d_model, d_model) for _ in range(4)])
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, query, key, value, mask=None):
        nbatches = query.size(0)
        # project, then split d_model into h heads: (B, h, T, d_k)
        query, key, value = [
            lin(x).view(nbatches, -1, self.h, self.d_k).transpose(1, 2)
            for lin, x in zip(self.linears, (query, key, value))
        ]
        x = attention(query, key, value, mask=mask, dropout=self.dropout)
        x = x.transpose(1, 2).contiguous().view(nbatches, -1, self.h * self.d_k)  # concat heads
        return self.linears[-1](x)


class PositionwiseFeedForward(nn.Module):
    """FFN(x) = max(0, x W1 + b1) W2 + b2 (equation 2)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.1):
        super().__init__()
        self.w_1 = nn.Linear(d_model, d_ff)
        self.w_2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.w_2(self.dropout(self.w_1(x).relu()))


class SublayerConnection(nn.Module):
    """LayerNorm(x + Sublayer(x)), with dropout on the sub-layer's output (section 5.4)."""

    def __init__(self, size: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, sublayer):
        return self.norm(x + self.dropout(sublayer(x)))


class EncoderLayer(nn.Module):
    def __init__(self, size: int, self_attn, feed_forward, dropout: float):
        super().__init__()
        self.self_attn = self_attn
        self.feed_forward = feed_forward
        self.sublayer = nn.ModuleList([SublayerConnection(size, dropout) for _ in range(2)])

    def forward(self, x, mask=None):
        x = self.sublayer[0](x, lambda x: self.self_attn(x, x, x, mask))
        return self.sublayer[1](x, self.feed_forward)


class DecoderLayer(nn.Module):
    def __init__(self, size: int, self_attn, src_attn, feed_forward, dropout: float):
        super().__init__()
        self.self_attn = self_attn
        self.src_attn = src_attn
        self.feed_forward = feed_forward
        self.sublayer = nn.ModuleList([SublayerConnection(size, dropout) for _ in range(3)])

    def forward(self, x, memory, src_mask, tgt_mask):
        x = self.sublayer[0](x, lambda x: self.self_attn(x, x, x, tgt_mask))
        x = self.sublayer[1](x, lambda x: self.src_attn(x, memory, memory, src_mask))
        return self.sublayer[2](x, self.feed_forward)


class Encoder(nn.Module):
    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x, mask=None):
        for layer in self.layers:
            x = layer(x, mask)
        return x


class Decoder(nn.Module):
    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x, memory, src_mask, tgt_mask):
        for layer in self.layers:
            x = layer(x, memory, src_mask, tgt_mask)
        return x


class Embeddings(nn.Module):
    """Token embeddings multiplied by sqrt(d_model) (section 3.4)."""

    def __init__(self, d_model: int, vocab: int):
        super().__init__()
        self.lut = nn.Embedding(vocab, d_model)
        self.d_model = d_model

    def forward(self, x):
        return self.lut(x) * math.sqrt(self.d_model)


class PositionalEncoding(nn.Module):
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)) (section 3.5)."""

    def __init__(self, d_model: int, dropout: float, max_len: int = 5000):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        pos = torch.arange(max_len, dtype=torch.float64).unsqueeze(1)  # (max_len, 1)
        two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (d/2,)
        angle = pos / torch.pow(10000.0, two_i / d_model)  # (max_len, d/2)
        pe = torch.zeros(max_len, d_model, dtype=torch.float64)
        pe[:, 0::2] = torch.sin(angle)
        pe[:, 1::2] = torch.cos(angle)
        self.register_buffer("pe", pe.float().unsqueeze(0), persistent=False)  # (1, max_len, d)

    def forward(self, x):
        return self.dropout(x + self.pe[:, : x.size(1)])


def subsequent_mask(size: int, device=None):
    """True where position i may attend to position j (j <= i)."""
    return torch.tril(torch.ones(1, size, size, dtype=torch.bool, device=device))


class EncoderDecoder(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        c = config

        def attn():
            return MultiHeadedAttention(c.n_heads, c.d_model, c.dropout)

        def ff():
            return PositionwiseFeedForward(c.d_model, c.d_ff, c.dropout)

        self.encoder = Encoder([EncoderLayer(c.d_model, attn(), ff(), c.dropout) for _ in range(c.n_layers)])
        self.decoder = Decoder([DecoderLayer(c.d_model, attn(), attn(), ff(), c.dropout) for _ in range(c.n_layers)])
        self.src_embed = nn.Sequential(
            Embeddings(c.d_model, c.src_vocab), PositionalEncoding(c.d_model, c.dropout, c.max_len)
        )
        self.tgt_embed = nn.Sequential(
            Embeddings(c.d_model, c.tgt_vocab), PositionalEncoding(c.d_model, c.dropout, c.max_len)
        )
        self.generator = nn.Linear(c.d_model, c.tgt_vocab, bias=False)
        self.generator.weight = self.tgt_embed[0].lut.weight  # pre-softmax projection shares the embedding

    def encode(self, src, src_mask=None):
        return self.encoder(self.src_embed(src), src_mask)  # (B, S, d)

    def decode(self, memory, src_mask, tgt, tgt_mask):
        return self.decoder(self.tgt_embed(tgt), memory, src_mask, tgt_mask)  # (B, T, d)

    def forward(self, src, tgt):
        """Logits (B, T, tgt_vocab) for every target position (no padding masks)."""
        tgt_mask = subsequent_mask(tgt.size(1), tgt.device).unsqueeze(1)  # (1, 1, T, T)
        memory = self.encode(src)
        return self.generator(self.decode(memory, None, tgt, tgt_mask))
