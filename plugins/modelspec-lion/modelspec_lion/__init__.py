"""The Lion optimizer for modelspec.

`modelspec_lion.plugin` registers the train component `lion` (torch-free, so
`mspec check` can validate it); `modelspec_lion.optimizer.Lion` is the
`torch.optim.Optimizer` that `mspec train` builds.
"""

__version__ = "0.1.0"
