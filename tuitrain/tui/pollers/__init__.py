"""Provides the TUI's pollers: what a screen's poll thread reads from the store and the state it
keeps between reads, apart from the screens (which only show the messages they post)."""
