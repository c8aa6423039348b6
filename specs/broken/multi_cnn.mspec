# A CNN with three independent mistakes.
model CNN(classes: int = 10) {
    input image: float[B, 3, 32, 32]
    x = conv2d(image, 32, kernel=3, padding=1) |> relu |> maxpool(2)
    y = conv2d(x, 64, kernal=3, padding=1) |> relu |> maxpool(2)
    z = conv2d(image, 16, kernel=0)
    output logits = x |> flatten |> linear(classes) |> softmax(dim=-1, temperature=2.0)
}
