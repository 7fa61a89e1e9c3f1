"""Provides reusable widgets: config form fields, metric charts, run header, panes."""
