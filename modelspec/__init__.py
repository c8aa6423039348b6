"""modelspec: a declarative model-spec compiler for deep learning."""
