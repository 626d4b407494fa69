"""scripts/gpu_fullsize.py builds what was published and asks the exporter's runner for the real profiles.

The GPU run itself needs an H200 (BENCHMARKS.md); here, on the meta device, the geometry it
builds is checked against the catalog's derived parameter counts, and its exporter config
against the requests the benchmark child will get.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import gpu_fullsize as script  # noqa: E402

from wan_exporter import catalog  # noqa: E402
from wan_exporter.bench import runner  # noqa: E402


@pytest.mark.parametrize("geometry, kind, experts", [(script.A14B_TRANSFORMER, "wan2.2-t2v-a14b", 2),
                                                      (script.TI2V_TRANSFORMER, "wan2.2-ti2v-5b", 1)])
def test_full_size_transformers_have_the_published_parameter_count(geometry, kind, experts):
    import torch
    from diffusers import WanTransformer3DModel

    with torch.device("meta"):
        model = WanTransformer3DModel(**geometry)
    assert experts * sum(p.numel() for p in model.parameters()) == catalog.get(kind).parameters_derived


def test_requests_use_the_real_frame_counts_and_guidance():
    cfg = script._config(script.MODELS, "cuda:0", "bfloat16", steps=2)
    seen = {}
    for m in cfg.models:
        for p in m.profiles:
            r = runner.build_request(m, cfg.profiles[p], Path(m.path))
            seen[p] = (r["width"], r["height"], r["frames"], r["steps"], r["guidance_scale"], r["guidance_scale_2"],
                       r["dtype"], r["offload"])
    assert seen == {
        "wan2.2-t2v-a14b-480p": (832, 480, 81, 2, 4.0, 3.0, "bfloat16", "none"),
        "wan2.2-t2v-a14b-720p": (1280, 720, 81, 2, 4.0, 3.0, "bfloat16", "none"),
        "wan2.2-ti2v-5b-720p": (1280, 704, 121, 2, 5.0, None, "bfloat16", "none"),
    }
