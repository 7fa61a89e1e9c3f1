"""Provides the training process (`python -m tuitrain.train RUN_DIR`); heavy imports stay in its modules."""
