"""Provides generation samples as data: scores (exact match, similarity, repetition) and the
selection of which runs' steps to show side by side (tuitrain samples, the samples screen)."""
