"""System sampling (NVML, CPU, RAM, disk) and FLOPs / MFU (no torch at import)."""
