# Tensor types use square brackets, not angle brackets.
model MLP() {
    input image: float<B, 784>
    output logits = image |> linear(10)
}
