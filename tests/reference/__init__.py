"""Plain-PyTorch reference implementations of the shipped specs.

Each module here is written the way the model is usually written by hand,
without modelspec: nanoGPT's GPT-2 (fused `c_attn`), torchvision's ResNet
and VGG, Hugging Face's BERT naming, the 2017 Transformer with its attention
written out, the PyTorch tutorials' MLP, CNN and DCGAN. Sizes come in as
constructor arguments, so tests build small configurations.

`mapping` says how a built modelspec module corresponds to each reference:
the reference's config from the spec's hyperparameters, and the spec's
state_dict (or gradients) renamed and reshaped into the reference's.
"""
