"""The training runtime (data, builders, the loop, checkpoints, distributed).

`modelspec.train` is this package and, called, the API's `train(...)`
(`modelspec.api.train`: what `mspec train` does, in-process). Both under one
name, so that `modelspec.train(path)`, `from modelspec.train.loop import
Trainer`, `import modelspec.train.loop as loop` and `modelspec.train.loop`
all work: the package's module object is callable. Nothing here imports torch.
"""

import sys
import types


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from modelspec.api import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
