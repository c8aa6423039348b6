# GPT-3 175B (Brown et al., 2020): the GPT-2 architecture, scaled.
# (GPT-3 alternates dense and locally banded sparse attention; the parameter
# count is the same, and this spec uses dense attention throughout.)
import "gpt2.mspec"

model GPT3 = GPT2(ctx=2048, d=12288, heads=96, layers=96)
