import "std/transformer.mspec"

# `Mlp` works on sequences [B, T, D]; the pooled features here are [B, D].
model Head() {
    input features: float[B, 512]
    h = Mlp(features, 2048)
    output logits = h |> linear(10)
}
