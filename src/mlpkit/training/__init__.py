"""The training loop and what listens to it: callbacks, checkpoints, TensorBoard, diagnostics."""
