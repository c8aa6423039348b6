# The import's closing `"` is missing.
import "std/transformer.mspec
model Net() {
    input x: float[B, 10]
    output y = x |> linear(20)
}
