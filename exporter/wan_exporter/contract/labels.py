"""The closed sets of label values: each is declared here once and imported by whoever needs it.

A new value is a deliberate change here (and so in the README, the rules and the dashboards
that import it), never a string made up at a call site.
"""

from __future__ import annotations

# -- health -------------------------------------------------------------------------------------
ISSUE_KINDS: tuple[str, ...] = (
    "missing_model",  # the model directory or file is not there (or vanished during the check)
    "missing_file",  # a file the layout promises is absent (or unreadable for another reason)
    "truncated",  # a weight file ends before its header, tensor table or zip directory says it does
    "header_invalid",  # a safetensors/GGUF/zip table or a JSON metadata file does not parse or is inconsistent
    "hash_mismatch",  # content differs from the published digest (HF cache, download metadata) or the manifest
    "permission_denied",  # the exporter may not read a file or directory
    "version_skew",  # the installed diffusers/transformers cannot build the pipeline as declared
    "catalog_mismatch",  # the checkpoint disagrees with the published catalog entry
    "not_a_model",  # no Wan checkpoint form recognised (wan_exporter.scan), or not a Wan model
    "load_failed",  # the load check failed or timed out
    "changed_during_check",  # a file changed while it was hashed; checked again next run
    "manifest_write_failed",  # the hash manifest could not be saved (disk full, read-only)
    "symlink_loop",  # a symlink that resolves to itself
    "too_many_files",  # the walk hit its cap; the directory is not what it should be
    "not_regular_file",  # a FIFO, socket, device or directory where a file belongs; never opened
    "io_timeout",  # reading the model's files did not finish within exporter.io_timeout; the read is left behind
    "output_invalid",  # benchmark output failed a sanity check (fed by benchmarks)
    "benchmark_failing",  # the last benchmark run failed (fed by benchmarks)
)
# Findings that mean the files themselves are broken: the verdict is critical.
CRITICAL_KINDS: tuple[str, ...] = (
    "missing_file", "truncated", "header_invalid", "hash_mismatch", "permission_denied", "not_a_model", "symlink_loop",
    "not_regular_file",
)
DEGRADED_KINDS: tuple[str, ...] = (
    "catalog_mismatch", "version_skew", "load_failed", "changed_during_check", "manifest_write_failed",
    "too_many_files", "output_invalid", "benchmark_failing", "io_timeout",
)
# Findings that describe the checkpoint but do not mean the check failed.
INFORMATIONAL_KINDS: tuple[str, ...] = ("catalog_mismatch",)
CHECKS: tuple[str, ...] = ("layout", "headers", "hash", "load")
# How a checkpoint lies on disk (wan_exporter.scan reads each).
FORMS: tuple[str, ...] = ("diffusers", "official", "single_file", "gguf")
# What a hash check compared the bytes with: a digest the download published, or a manifest
# this exporter recorded at first sight.
INTEGRITY_REFERENCES: tuple[str, ...] = ("published", "recorded")
STATUSES: tuple[str, ...] = ("healthy", "degraded", "critical", "missing")

# -- benchmarks ---------------------------------------------------------------------------------
PHASES: tuple[str, ...] = ("load", "text_encode", "image_encode", "denoise", "vae_decode", "export")
SANITY_CHECKS: tuple[str, ...] = ("finite", "not_black", "not_frozen", "shape")
# Why a run failed. The child classifies what it can see; the runner adds the rest.
# "crash" is a child that died (signal, exit without a result); "unknown" is a failure nobody could
# classify (an unexpected exception, a reason this exporter does not know), never passed off as a crash.
FAILURE_REASONS: tuple[str, ...] = (
    "oom", "timeout", "crash", "cuda_error", "nan_output", "invalid_output", "load_failed", "model_missing",
    "unknown",
)
CHILD_FAILURE_REASONS: tuple[str, ...] = (
    "oom", "cuda_error", "load_failed", "nan_output", "invalid_output", "crash", "unknown",
)
# would_not_fit: the memory guard's estimate of the run's peak exceeds its device (bench/memory.py).
# gpu_allocated: the kubelet gave the GPU to a pod; gpu_allocation_unknown: the pod-resources API could
# not say. unschedulable, preempted, evicted: a Job-mode probe the scheduler did not run to the end.
SKIP_REASONS: tuple[str, ...] = ("model_missing", "gpu_unavailable", "gpu_busy", "gpu_memory_in_use",
                                  "unsupported_format", "gpu_allocated", "gpu_allocation_unknown",
                                  "unschedulable", "preempted", "evicted", "io_timeout", "would_not_fit")
BASELINE_SOURCES: tuple[str, ...] = ("config", "recorded")
# How the benchmarked denoiser's weights are stored (wan_exporter.bench.weights): most of its parameter
# bytes. "_scaled" is an fp8 file with scale tensors, dequantised at load (never run unscaled).
WEIGHT_FORMATS: tuple[str, ...] = (
    "fp32", "bf16", "fp16", "fp8_e4m3fn_scaled", "fp8_e5m2_scaled", "fp8_e4m3fn", "fp8_e5m2",
    "gguf_f32", "gguf_f16", "gguf_bf16", "gguf_q8_0", "gguf_q6_k", "gguf_q5_k", "gguf_q5_0", "gguf_q5_1",
    "gguf_q4_k", "gguf_q4_0", "gguf_q4_1", "gguf_q3_k", "gguf_q2_k", "other", "unknown",
)
COMPUTE_DTYPES: tuple[str, ...] = ("bfloat16", "float16", "float32")
USE_CASES: tuple[str, ...] = ("text_to_video", "image_to_video", "text_image_to_video")
PRIORITIES: tuple[str, ...] = ("speed", "quality", "memory")

# -- GPUs and the exporter ----------------------------------------------------------------------
THROTTLE_REASONS: tuple[str, ...] = (
    "gpu_idle", "applications_clocks_setting", "sw_power_cap", "hw_slowdown", "sync_boost",
    "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown", "display_clock_setting",
)
COLLECTOR_ERROR_REASONS: tuple[str, ...] = (
    "library_missing", "no_driver", "gpu_lost", "no_permission", "unknown_error", "timeout", "error",
)
# Throttle reasons that mean "slowed by heat or hardware" (gpu_idle, sw_power_cap and the clock
# settings are normal): WanGpuThrottling's default and the status page's "throttled".
HARDWARE_THROTTLE_REASONS: tuple[str, ...] = (
    "hw_slowdown", "hw_thermal_slowdown", "sw_thermal_slowdown", "hw_power_brake_slowdown",
)
# GPU collector error reasons that mean "no NVIDIA GPU on this host", not "GPU lost": no libnvidia-ml.
# no_driver is not one (the library is there, the kernel driver is not loaded). WanCollectorFailing's
# default ignore list, the status page, and the GPU poller's quiet log.
NO_GPU_COLLECTOR_REASONS: tuple[str, ...] = ("library_missing",)
CLOCK_DIRECTIONS: tuple[str, ...] = ("backward", "forward")

for _sub, _whole in ((CRITICAL_KINDS, ISSUE_KINDS), (DEGRADED_KINDS, ISSUE_KINDS), (INFORMATIONAL_KINDS, ISSUE_KINDS),
                     (CHILD_FAILURE_REASONS, FAILURE_REASONS), (HARDWARE_THROTTLE_REASONS, THROTTLE_REASONS),
                     (NO_GPU_COLLECTOR_REASONS, COLLECTOR_ERROR_REASONS)):
    assert set(_sub) <= set(_whole), set(_sub) - set(_whole)
assert not set(CRITICAL_KINDS) & set(DEGRADED_KINDS)
