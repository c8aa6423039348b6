# `hiden` is a typo for `hidden`.
model MLP(hidden: int = 128, classes: int = 10) {
    input x: float[B, 784]
    output logits = x |> linear(hidden) |> relu |> linear(classes)
}

model WideMLP = MLP(hiden=512)
