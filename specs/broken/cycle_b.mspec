# Helper of cycle_a.mspec: it imports cycle_a.mspec back for `Head`.
import "cycle_a.mspec"

block Body(d: int) {
    input x: float[B, D]
    output y = x |> linear(d) |> relu
}
