"""Torch-free data: sources (the one file reader), records and chat (formats, roles, tools,
loss weights), templates (the one chat-template lookup), estimate (what the editor and
`validate` show) and summary (the run's data counts)."""
