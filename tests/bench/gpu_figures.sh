#!/usr/bin/env bash
# Provides the issue-14 GPU figures in one run on an NVIDIA box: tests/bench/overhead.py on a
# ~350M Llama-style model (bf16 autocast, fused AdamW; instrumented vs plain loop vs HF Trainer,
# interleaved, >= 3 repeats) with instrumentation_fraction, the system sampler's cost and MFU,
# then a real `tuitrain run` of the same model whose time/* and mfu metrics `tuitrain show` prints.
#
#   pip install -e '.[dev,gpu]'        # nvidia-ml-py: the sampler's GPU metrics
#   bash tests/bench/gpu_figures.sh    # OUT=dir REPEATS=3 STEPS=200 to change; ~5 min on an H100
#
# Everything lands in $OUT (default bench-gpu-<UTC time>); the last line of $OUT/summary.json
# has the figures and the targets (overhead_ratio >= 0.99, vs_hf_trainer >= 1.0,
# instrumentation_fraction < 0.01). Nothing is downloaded: the model is built from its config and
# the data is the Python stdlib's own source.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-bench-gpu-$(date -u +%Y%m%dT%H%M%SZ)}
REPEATS=${REPEATS:-3}
STEPS=${STEPS:-200}
PY=${PYTHON:-python}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false TRANSFORMERS_VERBOSITY=error
log() { echo "[gpu_figures $(date -u +%H:%M:%S)] $*" | tee -a "$OUT/progress.log" >&2; }

nvidia-smi --query-gpu=name,memory.total,driver_version,power.limit --format=csv | tee "$OUT/gpu.csv" >&2
"$PY" - <<'PY' | tee "$OUT/env.json" >&2
import importlib.util, json, torch, transformers, accelerate
from tuitrain import perf
assert torch.cuda.is_available(), "no CUDA device visible to torch"
name = torch.cuda.get_device_name(0)
print(json.dumps({"device": name, "peak_bf16": perf.peak_flops(name, "bf16"),
                  "torch": torch.__version__, "cuda": torch.version.cuda,
                  "transformers": transformers.__version__, "accelerate": accelerate.__version__,
                  "nvidia_ml_py": importlib.util.find_spec("pynvml") is not None}))
PY

# 1. Smoke (about a minute): the CUDA paths of the trainer's timing (events read at the log
#    sync) and MFU on a tiny model, before the long part.
log "smoke: tiny model, bf16, 1 repeat"
"$PY" tests/bench/overhead.py --steps 40 --warmup 10 --repeats 1 --no-hf --precision bf16 \
    >"$OUT/smoke.out" 2>"$OUT/smoke.err"
tail -n 1 "$OUT/smoke.out" >&2

# 2. The figures: ~346M Llama-style, seq 1024, batch 8, bf16, fused AdamW, interleaved repeats.
log "overhead: llama-350m bf16 fused, $REPEATS repeats x (plain, tuitrain, hf_trainer), $STEPS steps"
"$PY" tests/bench/overhead.py --preset llama-350m --precision bf16 --fused \
    --repeats "$REPEATS" --steps "$STEPS" --warmup 20 --log-every 10 \
    >"$OUT/llama350m.out" 2>"$OUT/llama350m.err"
grep -E '^(repeat|system sampler)' "$OUT/llama350m.err" >&2 || true

# 3. The same model through `tuitrain run`: the store's time/* and mfu metrics and `show`.
log "tuitrain run: llama-350m, 60 steps"
RUNS="$OUT/runs"
"$PY" -m tuitrain run configs/demo.yaml --runs-dir "$RUNS" --name gpu-figures \
    --set model.arch.type=llama --set model.arch.hidden_size=1024 --set model.arch.num_layers=24 \
    --set model.arch.num_heads=16 --set model.arch.intermediate_size=3328 \
    --set model.arch.max_position_embeddings=1024 --set data.max_seq_length=1024 \
    --set data.max_bytes=4000000 --set batch.size=8 --set training.max_steps=60 \
    --set training.eval_every=1000 --set training.save_every=1000 --set training.log_every=10 \
    --set training.mixed_precision=bf16 --set optimizer.fused=true --set optimizer.lr=3e-4 \
    --set generation.enabled=false \
    >"$OUT/run.out" 2>&1 || log "tuitrain run exited with $? (see $OUT/run.out)"
"$PY" -m tuitrain show --runs-dir "$RUNS" gpu-figures --events 3 >"$OUT/show.txt" 2>&1 || true
grep -E '^(status|throughput|step time):' "$OUT/show.txt" >&2 || true
"$PY" -m tuitrain export --runs-dir "$RUNS" gpu-figures --format csv \
    --name time/data_s --name time/compute_s --name time/overhead_s --name mfu \
    --name tokens_per_s --name sys/gpu0_util --name sys/gpu0_power_w -o "$OUT/run_metrics.csv" || true

# 4. One line with the figures and the targets.
"$PY" - "$OUT" <<'PY' | tee "$OUT/summary.json"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
b = json.loads((out / "llama350m.out").read_text().strip().splitlines()[-1])
s = json.loads((out / "smoke.out").read_text().strip().splitlines()[-1])
show = (out / "show.txt").read_text() if (out / "show.txt").exists() else ""
keep = ("overhead_ratio", "vs_hf_trainer", "instrumentation_fraction", "instrumentation_fractions",
        "step_path_fraction", "sampler_fraction", "sampler_s_per_call", "sampler_s_per_step",
        "writer_thread_cpu_fraction", "time_split_s", "tokens_per_s", "mfu", "mfu_note",
        "steps_per_s", "runs", "model_params", "device", "precision", "fused")
fig = {k: b.get(k) for k in keep}
fig["targets"] = {
    "overhead_ratio>=0.99": b["overhead_ratio"] >= 0.99,
    "vs_hf_trainer>=1.0": b["vs_hf_trainer"] is not None and b["vs_hf_trainer"] >= 1.0,
    "instrumentation_fraction<0.01": b["instrumentation_fraction"] < 0.01,
}
fig["smoke"] = {k: s.get(k) for k in ("instrumentation_fraction", "mfu", "time_split_s")}
fig["show"] = [l for l in show.splitlines() if l.startswith(("status", "throughput", "step time"))]
print(json.dumps(fig))
PY
log "done: $OUT/summary.json"
