# A Windows path: `\c` is not an escape (and imports use `/` anyway).
import "..\common\blocks.mspec"

model Tiny() {
    input x: float[B, 10]
    output y = x |> linear(10)
}
