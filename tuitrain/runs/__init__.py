"""Run processes: launch, stop, resume, liveness, nodes, lanes, branching and lineage (no torch, no Textual)."""
