"""Provides notifications that reach a user who is away: which events notify (rules), what they
say (message), where they go (deliver: Apprise URLs and notify.command), the per-runs-dir
notifier process (daemon), the notify log and the user's settings (secrets never stored).

Layering: above store, runs, doctor, sweep and lrfind; below cli and tui; never imports torch.
"""
