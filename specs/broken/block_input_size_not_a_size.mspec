# A block's input declares a size as a string (found by the fuzzer: it used to crash the checker).
block Mix() {
    input x: float[B, "64"]
    output y = x |> linear(64)
}

model Net() {
    input x: float[B, 64]
    output y = Mix(x)
}
