"""FLOPs per denoising step: the formula against torch's own FLOP counter over real pipelines.

The counter (torch.utils.flop_counter.FlopCounterMode) sees every matrix product the
transformer's real forward runs, inside a real diffusers pipeline call: the token count, the
classifier-free-guidance doubling, TI2V-5B's per-token timestep and Wan2.1 I2V's image tokens
all come from the pipeline, not from our reading of it. Attention runs on the math backend
there, because the counter has no formula for the CPU flash kernel.
"""

from __future__ import annotations

import pytest

from wan_exporter import catalog
from wan_exporter.measure import flops
from wan_exporter.checkpoint.facts import derive_facts

# The formula counts exactly what the counter counts (matmuls and the patch convolution); the
# tolerance only leaves room for a diffusers release that adds a small projection.
TOLERANCE = 0.01

CASES = {
    "t2v-a14b": ("tiny-wan2.2-t2v-a14b", False, 4.0),
    "t2v-a14b-no-cfg": ("tiny-wan2.2-t2v-a14b", False, 1.0),
    "i2v-a14b": ("tiny-wan2.2-i2v-a14b", True, 3.5),
    "ti2v-5b": ("tiny-wan2.2-ti2v-5b", False, 5.0),
    "ti2v-5b-image": ("tiny-wan2.2-ti2v-5b", True, 5.0),
    "wan21-t2v": ("tiny-wan2.1-t2v", False, 5.0),
    "wan21-i2v": ("tiny-wan2.1-i2v", True, 5.0),
}
WIDTH, HEIGHT, FRAMES, STEPS = 48, 32, 9, 2


def _image_pipeline(pipe):
    from diffusers import WanImageToVideoPipeline, WanPipeline

    if not isinstance(pipe, WanPipeline):
        return pipe
    return WanImageToVideoPipeline(**pipe.components, boundary_ratio=pipe.config.boundary_ratio, expand_timesteps=True)


def _counted_run(pipe, image: bool, guidance: float) -> tuple[int, int]:
    """(FLOPs the counter saw inside the denoisers, number of denoiser forwards) of one real call."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from wan_exporter.bench.child import conditioning_image

    seen = {"flops": 0, "calls": 0}
    for name in ("transformer", "transformer_2"):
        model = getattr(pipe, name, None)
        if model is None:
            continue

        def counted(*args, _forward=model.forward, **kwargs):
            with FlopCounterMode(display=False) as counter:
                out = _forward(*args, **kwargs)
            seen["flops"] += counter.get_total_flops()
            seen["calls"] += 1
            return out

        model.forward = counted
    kwargs = dict(prompt="a cat walks on the grass", negative_prompt="", height=HEIGHT, width=WIDTH,
                  num_frames=FRAMES, num_inference_steps=STEPS, guidance_scale=guidance, output_type="latent",
                  max_sequence_length=flops.TEXT_TOKENS, generator=torch.Generator("cpu").manual_seed(0))
    if image:
        kwargs["image"] = conditioning_image(WIDTH, HEIGHT, 0)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        pipe(**kwargs)
    return seen["flops"], seen["calls"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_step_flops_match_a_flop_counter_over_the_real_pipeline(case, tmp_path):
    from wan_exporter import tiny

    kind, image, guidance = CASES[case]
    pipe = tiny.make_pipeline(kind)
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(str(tmp_path / kind))
    facts = derive_facts(tmp_path / kind)  # what the exporter reads off disk
    if image:
        pipe = _image_pipeline(pipe)
    counted, calls = _counted_run(pipe, image, guidance)

    step = flops.count_step(facts.transformer_config, WIDTH, HEIGHT, FRAMES, facts.vae_compression, guidance,
                            image_tokens=facts.image_tokens or 0, per_token_timestep=bool(facts.expand_timesteps))
    assert step is not None
    assert calls == STEPS * (2 if guidance > 1 else 1)
    assert step.cfg == (guidance > 1)
    assert step.step_flops * STEPS == pytest.approx(counted, rel=TOLERANCE)


def test_token_count_follows_the_vae_compression():
    # Wan2.1 VAE 4x8x8 + patch 1x2x2; Wan2.2 VAE 4x16x16 + patch 1x2x2 (WAN_FACTS.md).
    assert flops.latent_tokens(832, 480, 81, (4, 8, 8)) == 21 * 30 * 52 == 32_760
    assert flops.latent_tokens(1280, 720, 81, (4, 8, 8)) == 75_600
    assert flops.latent_tokens(1280, 704, 121, (4, 16, 16)) == 27_280
    assert flops.vae_stride_from_compression((4, 32, 32)) == (4, 16, 16)


def test_readme_worked_example_a14b_480p():
    entry = catalog.get("wan2.2-t2v-a14b")
    step = flops.count_step(entry.architecture, 832, 480, 81, entry.vae_compression, guidance_scale=4.0)
    assert step.tokens == 32_760
    assert step.forward_flops == pytest.approx(1.68e15, rel=0.01)  # "about 1.7 PFLOP per forward"
    assert step.step_flops == 2 * step.forward_flops  # guidance 4.0: the unconditional branch runs too
    big = flops.count_step(entry.architecture, 1280, 720, 81, entry.vae_compression, guidance_scale=4.0)
    assert big.tokens == 75_600 and big.forward_flops == pytest.approx(6.5e15, rel=0.02)
    ti2v = catalog.get("wan2.2-ti2v-5b")
    five = flops.count_step(ti2v.architecture, 1280, 704, 121, ti2v.vae_compression, guidance_scale=5.0,
                            per_token_timestep=True)
    assert five.tokens == 27_280 and five.forward_flops == pytest.approx(0.52e15, rel=0.03)


def test_official_and_diffusers_configs_give_the_same_count():
    diffusers_cfg = {"num_attention_heads": 40, "attention_head_dim": 128, "num_layers": 40, "ffn_dim": 13824,
                     "patch_size": [1, 2, 2], "in_channels": 16, "out_channels": 16, "text_dim": 4096, "freq_dim": 256}
    official_cfg = {"_class_name": "WanModel", "dim": 5120, "num_heads": 40, "num_layers": 40, "ffn_dim": 13824,
                    "in_dim": 16, "out_dim": 16, "freq_dim": 256, "text_len": 512, "model_type": "t2v"}
    assert flops.shape_from_config(diffusers_cfg) == flops.shape_from_config(official_cfg)


@pytest.mark.parametrize("cfg", [{}, {"num_layers": 40, "ffn_dim": 13824}, {"dim": 5120, "ffn_dim": "big", "num_layers": 40},
                                 {"dim": 5120, "ffn_dim": 13824, "num_layers": 40, "patch_size": [1, 2]},
                                 {"_class_name": "WanAnimateTransformer3DModel", "dim": 5120, "ffn_dim": 13824,
                                  "num_layers": 40}])
def test_config_without_geometry_gives_no_figure(cfg):
    assert flops.count_step(cfg, 832, 480, 81, (4, 16, 16), 4.0) is None


def test_vace_control_blocks_are_counted():
    # No tiny VACE pipeline exists; the transformer's real forward with a control video is enough.
    import torch
    from diffusers import WanVACETransformer3DModel
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = WanVACETransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
        text_dim=32, freq_dim=256, ffn_dim=32, num_layers=4, vace_layers=[0, 2], vace_in_channels=48,
        rope_max_seq_len=32).eval()
    frames, height, width = 3, 8, 12  # latent sizes: 3 x 4 x 6 = 72 tokens
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 16, frames, height, width), torch.tensor([500]), torch.randn(1, flops.TEXT_TOKENS, 32),
              control_hidden_states=torch.randn(1, 48, frames, height, width))
    shape = flops.shape_from_config(dict(model.config))
    assert shape.vace_layers == 2
    assert flops.forward_flops(shape, frames * height // 2 * width // 2) == pytest.approx(counter.get_total_flops(),
                                                                                         rel=TOLERANCE)
