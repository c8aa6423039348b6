# A binding names the layer it makes: `class` is a Python keyword, so the torch
# backend cannot make it an attribute, and refuses it rather than rename it.
model MLP() {
    input image: float[B, 784]
    class = image |> linear(128) |> relu
    output logits = class |> linear(10, name=head)
}
