"""Torch-free data: sources (file readers), records (formats), chat templates, the editor's estimate."""
