"""Model stages: the causal LM with its feedback head, batching, the training loop, checkpoints.

Everything here imports torch and transformers; the CLI imports these modules only inside the
model commands. ``lfft.load`` (see :func:`lfft.model.checkpoint.load`) is the public entry point
for using a trained checkpoint from Python.
"""
