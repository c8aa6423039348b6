# cycle_a.mspec and cycle_b.mspec import each other.
import "cycle_b.mspec"

block Head(classes: int) {
    input x: float[B, D]
    output y = x |> linear(classes)
}

model Net() {
    input x: float[B, 32]
    output logits = x |> Body(64) |> Head(10)
}
