"""Provides the torch-free LR range test math (ramp, smoothing, stop rule, suggestion) and the LR race verdict."""
