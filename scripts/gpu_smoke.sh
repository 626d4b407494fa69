#!/usr/bin/env bash
# GPU checks on a machine with an NVIDIA GPU: NVML vs nvidia-smi, every tiny pipeline kind on
# CUDA through the exporter's runner (peak memory, synchronised timing, energy), and a live
# exporter scrape with a GPU config. Writes its findings into OUT (default ./gpu-smoke).
# Usage: PYTHONPATH=exporter bash scripts/gpu_smoke.sh [OUT]
set -uo pipefail
OUT="${1:-gpu-smoke}"; mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export WAN_EXPORTER_CACHE="${WAN_EXPORTER_CACHE:-/tmp/wan-tiny}" XDG_STATE_HOME="${XDG_STATE_HOME:-/tmp/wan-state}"

nvidia-smi -q > "$OUT/nvidia-smi-q.txt" 2>&1
"$PY" scripts/gpu_verify.py --json "$OUT/nvml-vs-smi.json" > "$OUT/nvml-vs-smi.txt" 2>&1; echo "nvml-vs-smi exit $?" >> "$OUT/nvml-vs-smi.txt"
"$PY" -m wan_exporter tiny-models "$WAN_EXPORTER_CACHE" > "$OUT/tiny.txt" 2>&1

T="$WAN_EXPORTER_CACHE"
cat > "$OUT/gpu.yaml" <<YAML
models:
  - {name: tiny-t2v-a14b, kind: tiny-wan2.2-t2v-a14b, path: "$T/tiny-wan2.2-t2v-a14b", device: cuda:0, dtype: bfloat16, profiles: [tiny]}
  - {name: tiny-i2v-a14b, kind: tiny-wan2.2-i2v-a14b, path: "$T/tiny-wan2.2-i2v-a14b", device: cuda:0, dtype: bfloat16, profiles: [tiny-image]}
  - {name: tiny-ti2v-5b, kind: tiny-wan2.2-ti2v-5b, path: "$T/tiny-wan2.2-ti2v-5b", device: cuda:0, dtype: bfloat16, offload: model, profiles: [tiny, tiny-image]}
  - {name: tiny-wan2.1-t2v, kind: tiny-wan2.1-t2v, path: "$T/tiny-wan2.1-t2v", device: cuda:0, dtype: float16, profiles: [big]}
  - {name: tiny-wan2.1-i2v, kind: tiny-wan2.1-i2v, path: "$T/tiny-wan2.1-i2v", device: cuda:0, dtype: bfloat16, offload: sequential, profiles: [tiny-image]}
profiles:
  tiny: {width: 64, height: 64, frames: 17, steps: 8}
  tiny-image: {width: 64, height: 64, frames: 17, steps: 8, image: true}
  big: {width: 256, height: 256, frames: 33, steps: 8}
schedules: {benchmark: {interval: 1h}, gpu: {interval: 2s}}
benchmark: {busy_utilization_ratio: 1.0, busy_foreign_memory_bytes: 100GiB}
YAML
for spec in tiny-t2v-a14b:tiny tiny-i2v-a14b:tiny-image tiny-ti2v-5b:tiny tiny-ti2v-5b:tiny-image tiny-wan2.1-t2v:big tiny-wan2.1-i2v:tiny-image; do
  m="${spec%%:*}"; p="${spec##*:}"
  "$PY" -m wan_exporter bench --config.file "$OUT/gpu.yaml" --model "$m" --profile "$p" --json > "$OUT/bench-$m-$p.json" 2> "$OUT/bench-$m-$p.err"
done
"$PY" -m wan_exporter --config.file "$OUT/gpu.yaml" --web.listen-address 127.0.0.1:19834 > "$OUT/exporter.log" 2>&1 &
pid=$!
for i in $(seq 1 90); do
  sleep 2
  curl -s 127.0.0.1:19834/metrics > "$OUT/metrics.prom" || true
  n=$(grep -c '^wan_benchmark_runs_total.* 1.0' "$OUT/metrics.prom" || true)
  [ "$n" -ge 6 ] && break
done
nvidia-smi --query-gpu=power.draw,temperature.gpu,memory.used,utilization.gpu --format=csv > "$OUT/smi-at-scrape.csv"
kill -TERM $pid; wait $pid
grep -E '^wan_(gpu_|generation_(peak|energy|duration_seconds_(sum|count))|benchmark_(failures_total.* [1-9]|last_run_success))' "$OUT/metrics.prom" > "$OUT/metrics-summary.txt"
echo done
