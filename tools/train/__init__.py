"""Trainer of the shipped demand model: generator, training, ONNX/TFLite export, evaluation (python -m tools.train)."""
