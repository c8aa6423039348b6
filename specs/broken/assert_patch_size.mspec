# A ViT patch embedding: 224×224 images do not split into 15×15 patches.
model PatchEmbed(size: int = 224, patch: int = 15, d: int = 768) {
    input image: float[B, 3, 224, 224]
    assert size % patch == 0, "the image size must be a multiple of the patch size"
    output patches = image |> conv2d(d, kernel=patch, stride=patch) |> flatten(2) |> transpose(1, 2)
}
