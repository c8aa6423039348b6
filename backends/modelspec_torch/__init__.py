"""The PyTorch backend: IR → readable PyTorch source → `nn.Module`.

`generate_source` writes the file `mspec compile` saves; `build` loads that
same source and instantiates its model class, so what is trained is exactly
what is exported. Importing this package does not import torch; `build`
does.
"""

from modelspec_torch.codegen import generate_source

__all__ = ["build", "generate_source"]


def build(*args, **kwargs):
    from modelspec_torch.build import build as _build

    return _build(*args, **kwargs)
