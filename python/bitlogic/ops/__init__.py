"""The arithmetic of the trainable layers, between the layers of :mod:`bitlogic.nn` and the CUDA back end.

One module per layer family holds its shared math (gate relaxations, EFD gradients, sign estimators), its
``torch.autograd.Function`` s and the one rule that picks where a call runs:

* :mod:`bitlogic.ops.logic`: relaxed two-input gates, on the fused CPU kernels of ``bitlogic._native`` (float32 on
  the CPU), the CUDA kernels of :mod:`bitlogic.gpu.logic`, or plain torch;
* :mod:`bitlogic.ops.lut`: lookup tables with EFD gradients, on the CUDA kernels of :mod:`bitlogic.gpu.lut` or
  plain torch;
* :mod:`bitlogic.ops.binary`: XNOR-popcount dot products with straight-through sign estimators, on the CUDA kernels
  of :mod:`bitlogic.gpu.binary` or plain torch;
* :mod:`bitlogic.ops.estimators`: what the families share in training a discrete choice (the estimators' names, the
  exact straight-through, Gumbel and logistic noise).

Every path gives the same outputs and gradients up to float rounding (bit for bit where the module says so). The
imports run one way, ``bitlogic.nn -> bitlogic.ops -> bitlogic.gpu``: ``gpu`` only launches kernels and knows
nothing of layers (the ``[tool.importlinter]`` contracts of pyproject.toml check it).
"""
