import "std/transformer.mspec"

# `Mlp` works on sequences [B, T, D]; the features here are [B, D].
model Head() {
    input features: float[B, 512]
    output logits = features |> Mlp(2048) |> linear(10)
}
