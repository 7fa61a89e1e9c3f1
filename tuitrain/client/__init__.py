"""The run client: register a run, write metrics and events, steer, SIGTERM (tuitrain.init, integrations)."""
