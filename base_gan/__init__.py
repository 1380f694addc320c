"""The base GAN: generator (E2GAN-shaped, text-conditioned), pix2pix baseline, discriminator, losses."""

from __future__ import annotations

from typing import Any

from base_gan.generator import LAYER_GROUPS, STRIDE, Generator, GeneratorConfig, build_generator
from base_gan.pix2pix import Pix2PixConfig, Pix2PixResnetGenerator, build_pix2pix


def config_from_dict(d: dict[str, Any]) -> GeneratorConfig | Pix2PixConfig:
    """The config saved in a config.json, dispatched on its ``arch`` ("e2gan" or "pix2pix")."""
    arch = d.get("arch", "e2gan")
    if arch == "e2gan":
        return GeneratorConfig.from_dict(d)
    if arch == "pix2pix":
        return Pix2PixConfig.from_dict(d)
    raise ValueError(f"unknown generator arch {arch!r} (known: e2gan, pix2pix)")


def build_model(config: GeneratorConfig | Pix2PixConfig | dict[str, Any], seed: int = 0):
    """Either generator from its config (or config dict), with deterministic weights for ``seed``."""
    if isinstance(config, dict):
        config = config_from_dict(config)
    if isinstance(config, Pix2PixConfig):
        return build_pix2pix(config, seed)
    return build_generator(config, seed)


__all__ = ["LAYER_GROUPS", "STRIDE", "Generator", "GeneratorConfig", "build_generator", "Pix2PixConfig",
           "Pix2PixResnetGenerator", "build_pix2pix", "config_from_dict", "build_model"]
