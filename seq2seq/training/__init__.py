"""Training: the run, the loop, one update, the optimizer, the loss, validation, checkpoints, when to stop,
TensorBoard, the insight probe and data-parallel training."""
