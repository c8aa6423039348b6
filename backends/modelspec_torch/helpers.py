"""Source of the small helpers a generated file may need, emitted into that
file only when one of its ops uses them (the file imports nothing but torch
and math)."""

SINUSOIDAL_POSITIONS = '''class SinusoidalPositions(nn.Module):
    """The fixed sine/cosine position table of "Attention Is All You Need" (no parameters)."""

    def __init__(self, max_len, width):
        super().__init__()
        position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
        frequency = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
        table = torch.zeros(max_len, width)
        table[:, 0::2] = torch.sin(position * frequency)
        table[:, 1::2] = torch.cos(position * frequency[: width // 2])
        self.register_buffer("weight", table, persistent=False)'''

ROTARY = '''class Rotary(nn.Module):
    """Rotary position embedding over the last dimension of [B, h, T, d] (d even; no parameters).

    Positions count from `offset`, the tokens already decoded while a KV cache is in use.
    """

    def __init__(self, base):
        super().__init__()
        self.base = base
        self.offset = 0

    def forward(self, x):
        half = x.size(-1) // 2
        frequency = self.base ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
        position = torch.arange(self.offset, self.offset + x.size(-2), device=x.device, dtype=torch.float32)
        angle = position.unsqueeze(1) * frequency
        cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)'''

WITH_CAUSAL = '''def with_causal(mask, queries, keys):
    """A mask that also hides future positions (SDPA takes a mask or is_causal, not both)."""
    causal = torch.ones(queries, keys, dtype=torch.bool, device=mask.device).tril()
    if mask.dtype == torch.bool:
        return mask & causal
    return mask.masked_fill(~causal, float("-inf"))'''

MULTIHEAD_ATTENTION = '''class MultiheadAttention(nn.Module):
    """Multi-head attention with separate q, k, v and output projections."""

    def __init__(self, width, memory_width, heads, causal, dropout, bias):
        super().__init__()
        self.heads, self.causal, self.dropout = heads, causal, dropout
        self.q_proj = nn.Linear(width, width, bias=bias)
        self.k_proj = nn.Linear(memory_width, width, bias=bias)
        self.v_proj = nn.Linear(memory_width, width, bias=bias)
        self.out_proj = nn.Linear(width, width, bias=bias)

    def forward(self, x, memory, mask=None):
        q = self.q_proj(x).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, h, T, d)
        k = self.k_proj(memory).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, h, S, d)
        v = self.v_proj(memory).unflatten(-1, (self.heads, -1)).transpose(1, 2)
        causal = self.causal
        if mask is not None and causal:
            mask, causal = with_causal(mask, q.size(-2), k.size(-2)), False
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal)
        return self.out_proj(y.transpose(1, 2).flatten(2))'''

ATTENTION = '''class Attention(nn.Module):
    """Scaled dot-product attention over [B, h, T, d] (no parameters).

    While decoding with a KV cache (`modelspec_torch.generate`), `past` holds
    the keys and values of earlier positions, so each new token costs one
    position's projections instead of the whole prefix. They are kept in
    buffers that double when full: a token's keys are written in place, not
    the whole cache copied.
    """

    caches_keys_and_values = True

    def __init__(self, causal=False, dropout=0.0, scale=None):
        super().__init__()
        self.causal, self.dropout, self.scale = causal, dropout, scale
        self.past = None  # None: no cache; [keys, values, length] (empty at first) while decoding

    def remember(self, k, v):
        """The keys and values of every position so far, the new ones `k`, `v` included."""
        length = self.past[2] if self.past else 0
        end = length + k.size(-2)
        if self.past and end <= self.past[0].size(-2):
            keys, values = self.past[0], self.past[1]
        else:  # new buffers, twice as long as what they hold (at least 16 positions)
            capacity = max(end, 2 * length, 16)
            keys = k.new_empty(*k.shape[:-2], capacity, k.size(-1))
            values = v.new_empty(*v.shape[:-2], capacity, v.size(-1))
            if length:
                keys[..., :length, :] = self.past[0][..., :length, :]
                values[..., :length, :] = self.past[1][..., :length, :]
        keys[..., length:end, :] = k
        values[..., length:end, :] = v
        self.past[:] = [keys, values, end]
        return keys[..., :end, :], values[..., :end, :]

    def forward(self, q, k, v, mask=None):
        if self.past is not None:
            k, v = self.remember(k, v)
        causal, earlier = self.causal, k.size(-2) - q.size(-2)
        if causal and (mask is not None or earlier):
            # Query i sits at position earlier + i and may see keys up to there.
            allowed = torch.ones(q.size(-2), k.size(-2), dtype=torch.bool, device=q.device).tril(earlier)
            if mask is None:
                mask = allowed
            elif mask.dtype == torch.bool:
                mask = mask & allowed
            else:
                mask = mask.masked_fill(~allowed, float("-inf"))
            causal = False
        dropout = self.dropout if self.training else 0.0
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal, scale=self.scale
        )'''

POSITIONS = '''class Positions(nn.Module):
    """Positions 0..length-1 of a sequence, shifted by `offset` tokens already decoded (no parameters)."""

    def __init__(self):
        super().__init__()
        self.offset = 0

    def forward(self, length, device):
        return torch.arange(self.offset, self.offset + length, device=device)'''

# name -> (source, helpers it needs), in the order they are emitted
HELPERS = {
    "Attention": (ATTENTION, ()),
    "Positions": (POSITIONS, ()),
    "with_causal": (WITH_CAUSAL, ()),
    "Rotary": (ROTARY, ()),
    "SinusoidalPositions": (SINUSOIDAL_POSITIONS, ()),
    "MultiheadAttention": (MULTIHEAD_ATTENTION, ("with_causal",)),
}
