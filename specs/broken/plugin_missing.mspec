# `swin_block` comes from a plugin that is not installed here.
use "vision-zoo"

model Net() {
    input image: float[B, 3, 224, 224]
    output y = image |> swin_block(96, heads=3)
}
