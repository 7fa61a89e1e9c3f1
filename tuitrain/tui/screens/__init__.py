"""Provides the app's screens: runs list, editor, monitor, compare (one module each)."""
