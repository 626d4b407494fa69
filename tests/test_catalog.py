"""The capability catalog states the published Wan facts, and only those."""

from __future__ import annotations

import pytest

from wan_exporter import catalog
from wan_exporter.catalog import CATALOG, GB, CatalogEntry

BIG_KEYS = (
    "wan2.2-t2v-a14b", "wan2.2-i2v-a14b", "wan2.2-ti2v-5b", "wan2.2-animate-14b",
    "wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.1-i2v-14b-480p", "wan2.1-i2v-14b-720p",
    "wan2.1-flf2v-14b-720p", "wan2.1-vace-1.3b", "wan2.1-vace-14b",
)
TINY_KEYS = (
    "tiny-wan2.2-t2v-a14b", "tiny-wan2.2-i2v-a14b", "tiny-wan2.2-ti2v-5b", "tiny-wan2.1-t2v", "tiny-wan2.1-i2v",
)
ALL = [CATALOG[k] for k in CATALOG]


def test_catalog_has_exactly_the_published_and_tiny_kinds() -> None:
    assert set(CATALOG) == set(BIG_KEYS) | set(TINY_KEYS)
    assert set(catalog.TINY_KEYS) == set(TINY_KEYS)
    assert set(catalog.DEFAULT_MODELS) == {"wan2.2-t2v-a14b", "wan2.2-i2v-a14b", "wan2.2-ti2v-5b"}
    for key, e in CATALOG.items():
        assert e.key == key


def test_tiny_kinds_match_the_tiny_builder() -> None:
    from wan_exporter import tiny  # importing it must not need torch

    assert set(tiny.TINY_KINDS) == set(TINY_KEYS)


# ---------------------------------------------------------------- published figures


def test_wan22_a14b_moe_figures() -> None:
    t2v, i2v = CATALOG["wan2.2-t2v-a14b"], CATALOG["wan2.2-i2v-a14b"]
    for e in (t2v, i2v):
        assert e.parameters == 27 * 10**9 and e.active_parameters == 14 * 10**9
        assert e.experts == 2
        assert {(832, 480), (1280, 720)} <= set(e.resolutions)
        assert (e.frames_default, e.fps_default, e.steps_default) == (81, 16, 40)
        assert e.vae_z_dim == 16 and e.vae_compression == (4, 16, 16) and e.size_multiple == 16
        # README: "at least 80GB VRAM" for the single-GPU command, which runs with --offload_model True.
        assert e.vram_min_bytes == {"model": 80 * GB}
        assert catalog.vram_min_bytes(e, "model") == 80 * GB
        assert catalog.vram_min_bytes(e, "none") is None
    assert t2v.boundary_ratio == 0.875 and i2v.boundary_ratio == 0.900
    assert t2v.guidance_default == (4.0, 3.0) and i2v.guidance_default == (3.5, 3.5)
    assert t2v.pipeline == "WanPipeline" and i2v.pipeline == "WanImageToVideoPipeline"
    assert not i2v.image_encoder  # Wan2.2 I2V conditions through in_channels, no CLIP
    assert t2v.published_peak_bytes["h100-480p"] == 41_300_000_000
    assert t2v.published_peak_bytes["h100-720p"] == 59_800_000_000
    assert i2v.published_peak_bytes["h100-480p"] == 41_000_000_000


def test_wan22_ti2v_5b_figures() -> None:
    e = CATALOG["wan2.2-ti2v-5b"]
    assert e.parameters == 5 * 10**9 and e.experts == 1 and e.boundary_ratio is None
    assert set(e.resolutions) == {(1280, 704), (704, 1280)}
    assert (e.frames_default, e.fps_default, e.steps_default) == (121, 24, 50)
    assert e.vae_z_dim == 48 and e.vae_compression == (4, 32, 32) and e.size_multiple == 32
    assert e.inputs == ("text", "image") and e.task == "ti2v"
    assert e.vram_min_bytes["model"] == 24 * GB
    assert e.published_peak_bytes == {"rtx4090-720p-t2v": 22_900_000_000, "rtx4090-720p-i2v": 22_800_000_000}


def test_wan22_animate_figures() -> None:
    e = CATALOG["wan2.2-animate-14b"]
    assert e.pipeline == "WanAnimatePipeline" and e.task == "animate"
    assert e.resolutions[0] == (1280, 720)
    assert (e.frames_default, e.fps_default, e.steps_default) == (77, 30, 20)
    assert e.vram_min_bytes == {}  # nothing published
    # diffusers can load a LoRA into it, but the README advises against LoRAs trained on Wan2.2.
    assert e.lora is False and "advises against LoRAs" in e.notes


def test_wan21_line() -> None:
    small = CATALOG["wan2.1-t2v-1.3b"]
    assert small.parameters == 1_300_000_000
    assert set(small.resolutions) == {(832, 480), (480, 832)}  # 480P only; 720P "less stable"
    assert small.vram_min_bytes == {"model": 8_190_000_000}
    assert CATALOG["wan2.1-t2v-14b"].vram_min_bytes == {"group": 13 * GB}
    assert CATALOG["wan2.1-t2v-14b"].steps_default == 50
    for k in ("wan2.1-i2v-14b-480p", "wan2.1-i2v-14b-720p"):
        e = CATALOG[k]
        assert e.steps_default == 40 and e.image_encoder and e.pipeline == "WanImageToVideoPipeline"
    assert CATALOG["wan2.1-i2v-14b-480p"].resolutions[0] == (832, 480)
    assert CATALOG["wan2.1-i2v-14b-720p"].resolutions[0] == (1280, 720)
    assert "last_frame" in CATALOG["wan2.1-flf2v-14b-720p"].inputs
    assert CATALOG["wan2.1-vace-1.3b"].pipeline == CATALOG["wan2.1-vace-14b"].pipeline == "WanVACEPipeline"
    assert set(CATALOG["wan2.1-vace-14b"].resolutions) >= {(832, 480), (1280, 720)}
    for k in BIG_KEYS:
        if k.startswith("wan2.1"):
            e = CATALOG[k]
            assert (e.frames_default, e.fps_default, e.experts, e.vae_z_dim) == (81, 16, 1, 16)


def test_unpublished_vram_is_left_out() -> None:
    published = {"wan2.2-t2v-a14b", "wan2.2-i2v-a14b", "wan2.2-ti2v-5b", "wan2.1-t2v-1.3b", "wan2.1-t2v-14b"}
    for e in ALL:
        assert bool(e.vram_min_bytes) == (e.key in published), e.key
        assert not hasattr(e, "vram_recommended_bytes")  # no entry publishes one


# ---------------------------------------------------------------- rules every entry obeys


@pytest.mark.parametrize("e", ALL, ids=lambda e: e.key)
def test_entry_is_consistent(e: CatalogEntry) -> None:
    assert (e.frames_default - 1) % 4 == 0, "Wan needs 4n+1 frames (Wan2.1 generate.py --frame_num)"
    assert e.resolutions
    for w, h in e.resolutions:
        assert w % e.size_multiple == 0 and h % e.size_multiple == 0, (w, h)
        assert w % 16 == 0 and h % 16 == 0  # diffusers raises otherwise
    assert e.size_multiple == e.vae_compression[1] == e.vae_compression[2]
    assert e.vae_compression[0] == 4
    assert (e.experts == 2) == (e.boundary_ratio is not None)
    assert e.boundary_ratio is None or 0 < e.boundary_ratio < 1
    # float16 runs but breaks bf16-trained Wan weights (NaN / black frames): never listed for a real model.
    assert set(e.precisions) == ({"bfloat16", "float16", "float32"} if e.tiny else {"bfloat16", "float32"})
    assert set(e.output_formats) <= {"frames", "mp4"}
    assert set(e.vram_min_bytes) <= set(catalog.OFFLOAD_MODES)
    assert all(isinstance(v, int) and v > 0 for v in e.vram_min_bytes.values())
    assert all(isinstance(v, int) and v > 0 for v in e.published_peak_bytes.values())
    assert set(e.published_total_seconds) <= set(e.published_peak_bytes)
    assert e.lora is (e.key != "wan2.2-animate-14b")
    assert e.task in {"t2v", "i2v", "ti2v", "flf2v", "animate", "vace"}
    assert "text" in e.inputs
    if e.parameters is not None and e.active_parameters is not None:
        assert e.active_parameters <= e.parameters
    assert len(e.guidance_default) in (0, 1, e.experts)


@pytest.mark.parametrize("e", [CATALOG[k] for k in BIG_KEYS], ids=lambda e: e.key)
def test_published_entries_name_their_sources(e: CatalogEntry) -> None:
    assert not e.tiny and e.family in {"wan2.1", "wan2.2"}
    assert e.model_id.startswith("Wan-AI/") and e.key.split("-")[0] == e.family
    assert any("README" in s for s in e.sources)
    assert e.parameters is not None and e.steps_default is not None
    assert e.precisions[0] == "bfloat16"  # the native precision comes first
    assert "NaN" in e.notes and "float16" not in e.precisions  # fp16 is known to break
    if e.parameters_derived is not None:
        assert any("meta device" in s for s in e.sources)


@pytest.mark.parametrize("key", TINY_KEYS)
def test_tiny_entries_are_tiny(key: str) -> None:
    e = CATALOG[key]
    assert e.tiny and e.family == "tiny" and e.model_id == ""
    assert e.parameters is None and e.active_parameters is None and e.parameters_derived is None
    assert e.resolutions == ((32, 32),) and e.frames_default == 9
    assert e.vram_min_bytes == {}
    assert e.precisions[0] == "float32"
    imitated = CATALOG[key.removeprefix("tiny-")] if key.removeprefix("tiny-") in CATALOG else None
    if imitated is not None:
        assert (e.fps_default, e.experts, e.boundary_ratio, e.vae_z_dim) == (
            imitated.fps_default, imitated.experts, imitated.boundary_ratio, imitated.vae_z_dim)


def test_tiny_fps_is_stated_for_each_kind_not_inherited() -> None:
    import inspect

    assert inspect.signature(catalog._tiny).parameters["fps"].default is inspect.Parameter.empty


def test_tiny_specifics() -> None:
    assert CATALOG["tiny-wan2.2-t2v-a14b"].boundary_ratio == 0.875
    assert CATALOG["tiny-wan2.2-i2v-a14b"].boundary_ratio == 0.9
    assert not CATALOG["tiny-wan2.2-i2v-a14b"].image_encoder
    assert CATALOG["tiny-wan2.1-i2v"].image_encoder
    ti2v = CATALOG["tiny-wan2.2-ti2v-5b"]
    assert ti2v.size_multiple == 32 and ti2v.fps_default == 24 and ti2v.inputs == ("text", "image")
    assert CATALOG["tiny-wan2.1-t2v"].fps_default == 16


# ---------------------------------------------------------------- cross-checks against diffusers


def test_pipeline_classes_exist_in_diffusers() -> None:
    diffusers = pytest.importorskip("diffusers")
    for e in ALL:
        assert getattr(diffusers, e.pipeline, None) is not None, e.pipeline


@pytest.mark.parametrize("key", ["wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.2-t2v-a14b", "wan2.2-i2v-a14b",
                                 "wan2.2-ti2v-5b"])
def test_derived_parameter_count_matches_the_architecture(key: str) -> None:
    """parameters_derived is what diffusers builds from the published geometry (meta device: no memory)."""
    torch = pytest.importorskip("torch")
    from diffusers import WanTransformer3DModel

    e = CATALOG[key]
    with torch.device("meta"):
        m = WanTransformer3DModel(
            patch_size=(1, 2, 2), text_dim=4096, freq_dim=256, cross_attn_norm=True, eps=1e-6,
            qk_norm="rms_norm_across_heads", **dict(e.architecture),
        )
    assert sum(p.numel() for p in m.parameters()) * e.experts == e.parameters_derived
