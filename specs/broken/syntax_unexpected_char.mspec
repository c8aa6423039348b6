# Statements end at the end of the line; a `;` is not part of the language.
model Net() {
    input x: float[B, 10]
    output y = x |> linear(20) |> relu; 
}
