"""Provides integrations for bring-your-own training scripts (`tuitrain.integrations.hf` for HF Trainer).

Kept empty on purpose: importing the package loads nothing heavy; each integration module
imports its framework itself.
"""
