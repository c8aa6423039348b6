# ResNet-18 (He et al., 2015) for 1000 classes on 3×224×224 images.

# Two 3×3 convolutions with a residual connection; a 1×1 convolution
# projects the shortcut when the stride or the width changes.
block BasicBlock(out: int, stride: int = 1) {
    input x: float[B, C, H, W]
    h = x
        |> conv2d(out, kernel=3, stride=stride, padding=1, bias=false, name=conv1)
        |> batchnorm2d(name=bn1)
        |> relu
        |> conv2d(out, kernel=3, padding=1, bias=false, name=conv2)
        |> batchnorm2d(name=bn2)
    shortcut = x
    if stride != 1 or C != out {
        shortcut = x
            |> conv2d(out, kernel=1, stride=stride, bias=false, name=down_conv)
            |> batchnorm2d(name=down_bn)
    }
    output y = (h + shortcut) |> relu
}

model ResNet18(classes: int = 1000) {
    input image: float[B, 3, 224, 224]
    x = image
        |> conv2d(64, kernel=7, stride=2, padding=3, bias=false, name=conv1)
        |> batchnorm2d(name=bn1)
        |> relu
        |> maxpool(3, stride=2, padding=1)
    x = x |> BasicBlock(64, name=layer1_0) |> BasicBlock(64, name=layer1_1)
    x = x |> BasicBlock(128, stride=2, name=layer2_0) |> BasicBlock(128, name=layer2_1)
    x = x |> BasicBlock(256, stride=2, name=layer3_0) |> BasicBlock(256, name=layer3_1)
    x = x |> BasicBlock(512, stride=2, name=layer4_0) |> BasicBlock(512, name=layer4_1)
    output logits = x |> adaptive_avgpool(1) |> flatten |> linear(classes, name=fc)
}
