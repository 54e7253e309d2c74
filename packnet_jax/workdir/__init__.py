"""A training run's folder (local or a bucket URL): its config.json, validation.json and orbax checkpoints.

Below the command lines, training and evaluation alike: `train/` writes it, `eval`, `infer`,
`export` and `load_model` read it back, without importing the training stack.
"""
