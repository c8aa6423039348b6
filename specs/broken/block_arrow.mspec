# Blocks take their sizes from their parameters; `in -> out` is only for layers.
import "std/transformer.mspec"
model Net() {
    input x: float[B, T, 64]
    output y = Mlp(x, 64 -> 256)
}
