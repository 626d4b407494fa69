"""Per-model capabilities: published catalog figures and what the checkpoint says itself."""

from __future__ import annotations

from typing import Iterable

from prometheus_client.core import Metric

from .. import catalog
from ..config import Config
from ..state import Snapshot
from ._families import bool_value, gauge, info


class ModelCapabilities:
    name = "models"

    def families(self, snap: Snapshot, cfg: Config) -> Iterable[Metric]:
        m_info = info("wan_model", "Identity of each configured model (published catalog).",
                      ["model", "model_id", "kind", "family", "task", "pipeline"])
        present = gauge("wan_model_present", "1 when the model's files were found (local path or local HF cache).", ["model"])
        params = gauge("wan_model_parameters", "Published total parameters of the denoiser(s).", ["model"])
        active = gauge("wan_model_active_parameters", "Published parameters active per denoising step (MoE: one expert).", ["model"])
        res = gauge("wan_model_resolution_supported", "1 for each published native resolution.", ["model", "width", "height"])
        frames = gauge("wan_model_frames_default", "Published default frame count (Wan needs 4n+1 frames).", ["model"])
        fps = gauge("wan_model_fps_default", "Published frames per second of the output video.", ["model"])
        steps = gauge("wan_model_steps_default", "Published default number of denoising steps.", ["model"])
        inputs = gauge("wan_model_input_supported", "1 for each input the model takes.", ["model", "input"])
        outputs = gauge("wan_model_output_format_supported", "1 for each output format the pipeline produces.", ["model", "format"])
        prec = gauge("wan_model_precision_supported", "1 for each precision diffusers can run the model in.", ["model", "precision"])
        lora = gauge("wan_model_lora_supported", "1 when LoRA adapters can be loaded (WanLoraLoaderMixin).", ["model"])
        experts = gauge("wan_model_experts", "Published number of denoising experts (2 for Wan2.2 A14B MoE).", ["model"])
        boundary = gauge("wan_model_boundary_ratio", "Published switch point between the high- and low-noise experts.", ["model"])
        vram_min = gauge("wan_model_vram_min_bytes", "Published minimum GPU memory per offload mode.", ["model", "offload"])
        vram_rec = gauge("wan_model_vram_recommended_bytes", "Published recommended GPU memory.", ["model"])
        cc = gauge("wan_model_cuda_compute_capability_min", "Minimum CUDA compute capability (bf16 needs 8.0).", ["model"])
        size_mult = gauge("wan_model_size_multiple", "Width and height must be multiples of this.", ["model"])
        ck_params = gauge("wan_model_checkpoint_parameters",
                          "Denoiser parameters counted from the checkpoint's safetensors headers.", ["model"])
        ck_experts = gauge("wan_model_checkpoint_experts", "Denoising experts found in the checkpoint's model_index.json.", ["model"])
        ck_dtype = gauge("wan_model_checkpoint_dtype", "1 for each tensor dtype stored in the checkpoint.", ["model", "dtype"])
        m_cfg = info("wan_model_config", "How the exporter runs each model: device, GPU index (empty on CPU), dtype, offload.",
                     ["model", "device", "gpu", "dtype", "offload"])
        ck_boundary = gauge("wan_model_checkpoint_boundary_ratio", "boundary_ratio recorded in the checkpoint's model_index.json.", ["model"])

        for m in cfg.models:
            e = catalog.CATALOG.get(m.kind)
            if e is None:
                continue
            n = m.name
            m_info.add_metric([n, e.model_id, e.key, e.family, e.task, e.pipeline], {})
            gpu = ("0" if m.device == "cuda" else m.device.split(":", 1)[1]) if m.device.startswith("cuda") else ""
            m_cfg.add_metric([n, m.device, gpu, m.dtype, m.offload], {})
            found = snap.checkpoint_facts.get(n)
            if found is not None:
                present.add_metric([n], bool_value(found.get("present", False)))
            if e.parameters is not None:
                params.add_metric([n], e.parameters)
            if e.active_parameters is not None:
                active.add_metric([n], e.active_parameters)
            for w, h in e.resolutions:
                res.add_metric([n, str(w), str(h)], 1)
            frames.add_metric([n], e.frames_default)
            fps.add_metric([n], e.fps_default)
            if e.steps_default is not None:
                steps.add_metric([n], e.steps_default)
            for i in e.inputs:
                inputs.add_metric([n, i], 1)
            for f in e.output_formats:
                outputs.add_metric([n, f], 1)
            for p in e.precisions:
                prec.add_metric([n, p], 1)
            lora.add_metric([n], bool_value(e.lora))
            experts.add_metric([n], e.experts)
            if e.boundary_ratio is not None:
                boundary.add_metric([n], e.boundary_ratio)
            for mode, b in sorted(e.vram_min_bytes.items()):
                vram_min.add_metric([n, mode], b)
            if e.vram_recommended_bytes is not None:
                vram_rec.add_metric([n], e.vram_recommended_bytes)
            if e.compute_capability_min is not None:
                cc.add_metric([n], e.compute_capability_min)
            size_mult.add_metric([n], e.size_multiple)
            f = (found or {}).get("facts")
            if f is not None:
                if f.denoiser_parameters is not None:
                    ck_params.add_metric([n], f.denoiser_parameters)
                if f.experts is not None:
                    ck_experts.add_metric([n], f.experts)
                for d in f.dtypes:
                    ck_dtype.add_metric([n, d], 1)
                if f.boundary_ratio is not None:
                    ck_boundary.add_metric([n], f.boundary_ratio)
        return [m_info, m_cfg, present, params, active, res, frames, fps, steps, inputs, outputs, prec, lora, experts,
                boundary, vram_min, vram_rec, cc, size_mult, ck_params, ck_experts, ck_dtype, ck_boundary]
