"""How far a benchmark run is from the hardware's limit: FLOPs, utilisation, real-time factor."""

from __future__ import annotations

from .. import gpu_peaks
from .family import Family

SOURCE = "benchmark"
_L = ("model", "profile")

GENERATION_LATENT_TOKENS = Family(
    "wan_generation_latent_tokens", "gauge",
    "Video tokens the transformer attends over in the last successful run, from its width, height and frames "
    "and the VAE's compression (4x8x8 Wan2.1 VAE, 4x16x16 Wan2.2 VAE) with the 1x2x2 patch.",
    labels=_L, source=SOURCE)
GENERATION_FLOPS_PER_STEP = Family(
    "wan_generation_flops_per_step", "gauge",
    "Model floating-point operations of one denoising step of the last successful run, computed (not measured) "
    "when the run ended from the transformer config the run loaded and the run's tokens: one expert's matrix products, twice with "
    "classifier-free guidance.",
    labels=_L, source=SOURCE)
GENERATION_FLOPS_PER_SECOND = Family(
    "wan_generation_flops_per_second", "gauge",
    "Achieved model FLOP/s of the last successful run: FLOPs per step x steps over the denoise phase's seconds.",
    labels=_L, source=SOURCE)
GENERATION_PEAK_FLOPS_PER_SECOND = Family(
    "wan_generation_peak_flops_per_second", "gauge",
    "Datasheet peak dense tensor FLOP/s, in the run's dtype, of the GPU the last successful run used: the "
    "denominator of its utilisation. Absent on CPU, for float32 runs and for GPUs without a datasheet row.",
    labels=_L + ("gpu_model",), source=SOURCE,
    bounded={"gpu_model": tuple(p.key for p in gpu_peaks.PEAKS)})
GENERATION_MODEL_FLOPS_UTILIZATION_RATIO = Family(
    "wan_generation_model_flops_utilization_ratio", "gauge",
    "Model FLOPs utilisation of the last successful run: achieved FLOP/s over the GPU's datasheet peak dense "
    "tensor rate in the run's dtype (wan_generation_peak_flops_per_second). Absent where that peak is.",
    labels=_L, source=SOURCE)
GENERATION_REALTIME_FACTOR = Family(
    "wan_generation_realtime_factor", "gauge",
    "Seconds of video the last successful run produced (frames over the model's output fps) per second of "
    "generation, as measured at the profile's step count; 1 is real time. See "
    "wan_generation_projected_realtime_factor for the model's default step count.",
    labels=_L, source=SOURCE)
GENERATION_ENERGY_JOULES_PER_VIDEO_SECOND = Family(
    "wan_generation_energy_joules_per_video_second", "gauge",
    "GPU energy of the last successful run (NVML counter) per second of video it produced; absent without an "
    "energy counter.",
    labels=_L, source=SOURCE)

GENERATION_PROJECTED_STEPS = Family(
    "wan_generation_projected_steps", "gauge",
    "The model's default denoising step count (the catalog's), at which the projected figures are given.",
    labels=_L, source=SOURCE)
GENERATION_PROJECTED_DURATION_SECONDS = Family(
    "wan_generation_projected_duration_seconds", "gauge",
    "Projected, not measured: seconds a generation of the last successful run's size would take at the "
    "model's default step count (wan_generation_projected_steps): its measured fixed phases (text encode, "
    "image encode, VAE decode) plus default steps x its measured seconds per step.",
    labels=_L, source=SOURCE)
GENERATION_PROJECTED_REALTIME_FACTOR = Family(
    "wan_generation_projected_realtime_factor", "gauge",
    "Projected, not measured: seconds of video per second of generation at the model's default step count "
    "(wan_generation_projected_duration_seconds). A probe runs a few steps, so its measured "
    "wan_generation_realtime_factor is far higher than a real generation's.",
    labels=_L, source=SOURCE)

FAMILIES = (GENERATION_LATENT_TOKENS, GENERATION_FLOPS_PER_STEP, GENERATION_FLOPS_PER_SECOND,
            GENERATION_PEAK_FLOPS_PER_SECOND, GENERATION_MODEL_FLOPS_UTILIZATION_RATIO, GENERATION_REALTIME_FACTOR,
            GENERATION_ENERGY_JOULES_PER_VIDEO_SECOND, GENERATION_PROJECTED_STEPS,
            GENERATION_PROJECTED_DURATION_SECONDS, GENERATION_PROJECTED_REALTIME_FACTOR)
