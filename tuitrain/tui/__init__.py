"""Provides the Textual app: runs list, config editor, live monitor and run comparison.

Nothing here imports torch, transformers, accelerate or peft (the CLI opens the app lazily).
"""
