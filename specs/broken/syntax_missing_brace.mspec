# The closing `}` of the model was forgotten.
model MLP(hidden: int = 128) {
    input image: float[B, 1, 28, 28]
    output logits = image |> flatten |> linear(hidden) |> relu |> linear(10)
