"""Per-model capabilities: published catalog figures and what the checkpoint says itself."""

from __future__ import annotations

from typing import Iterable

from prometheus_client.core import Metric

from .. import catalog, gpuid
from ..config import Config
from ..state import Snapshot
from ..contract import checkpoint, models
from .families import bool_value, new


class ModelCapabilities:
    name = "models"
    # The GPU label of a model's config: which GPU it runs on (by the UUID its last run reported).
    reads = ("checkpoint_facts", ("gpus", lambda gpus: tuple((g.index, g.uuid, g.lost) for g in gpus)), "benchmarks")

    def families(self, snap: Snapshot, cfg: Config) -> Iterable[Metric]:
        m_info = new(models.INFO)
        present = new(models.PRESENT)
        params = new(models.PARAMETERS)
        active = new(models.ACTIVE_PARAMETERS)
        res = new(models.RESOLUTION_SUPPORTED)
        frames = new(models.FRAMES_DEFAULT)
        fps = new(models.FPS_DEFAULT)
        steps = new(models.STEPS_DEFAULT)
        inputs = new(models.INPUT_SUPPORTED)
        outputs = new(models.OUTPUT_FORMAT_SUPPORTED)
        prec = new(models.PRECISION_SUPPORTED)
        lora = new(models.LORA_SUPPORTED)
        experts = new(models.EXPERTS)
        boundary = new(models.BOUNDARY_RATIO)
        vram_min = new(models.VRAM_MIN_BYTES)
        size_mult = new(models.SIZE_MULTIPLE)
        ck_params = new(checkpoint.CHECKPOINT_PARAMETERS)
        ck_experts = new(checkpoint.CHECKPOINT_EXPERTS)
        ck_dtype = new(checkpoint.CHECKPOINT_DTYPE)
        m_cfg = new(models.CONFIG_INFO)
        ck_boundary = new(models.CHECKPOINT_BOUNDARY_RATIO)

        for m in cfg.models:
            e = catalog.CATALOG.get(m.kind)
            if e is None:
                continue
            n = m.name
            m_info.add_metric([n, e.model_id, e.key, e.family, e.task, e.pipeline], {})
            gpu = gpuid.gpu_label(snap.gpus, m.device, gpuid.reported_uuid(snap, n))
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
                boundary, vram_min, size_mult, ck_params, ck_experts, ck_dtype, ck_boundary]
