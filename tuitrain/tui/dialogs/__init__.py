"""Provides modal dialogs: confirmation and a validated one-line prompt."""
