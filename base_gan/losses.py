"""Losses of the base GAN: adversarial (LSGAN or hinge), L1, optional LPIPS, feature matching.

LPIPS is real or absent: its backbone (torchvision's ImageNet AlexNet/VGG/SqueezeNet weights) is a
download that this project never triggers. ``lpips_available()`` looks for the backbone's file in
the torch hub cache (``$TORCH_HOME/hub/checkpoints``) and says why it is unavailable otherwise;
``LPIPSLoss`` refuses to build without it. (``lpips.LPIPS(pnet_rand=True)`` would run with a random
backbone and meaningless values; that is never used as a stand-in.)
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from factory.core.errors import FactoryError

GAN_KINDS = ("lsgan", "hinge")
DEFAULT_L1_WEIGHT = 100.0  # pix2pix's lambda_L1


@dataclass(frozen=True)
class GANLoss:
    """Adversarial loss of one kind; logits are the discriminator's raw patch scores."""

    kind: str

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """Discriminator loss: low when real patches score high and fake patches low."""
        if self.kind == "lsgan":
            return 0.5 * (F.mse_loss(real_logits, torch.ones_like(real_logits))
                          + F.mse_loss(fake_logits, torch.zeros_like(fake_logits)))
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """Generator loss: low when the discriminator scores the generated patches as real."""
        if self.kind == "lsgan":
            return F.mse_loss(fake_logits, torch.ones_like(fake_logits))
        return -fake_logits.mean()


def gan_loss(kind: str = "lsgan") -> GANLoss:
    if kind not in GAN_KINDS:
        raise ValueError(f"unknown GAN loss {kind!r} (known: {', '.join(GAN_KINDS)})")
    return GANLoss(kind)


def l1_loss(output: torch.Tensor, target: torch.Tensor, weight: float = DEFAULT_L1_WEIGHT) -> torch.Tensor:
    """``weight`` x mean absolute error (pix2pix: 100)."""
    return weight * (output - target).abs().mean()


def feature_matching_loss(real_feats: list[torch.Tensor], fake_feats: list[torch.Tensor]) -> torch.Tensor:
    """Mean over the discriminator's layers of L1(fake features, real features); real ones are detached."""
    if len(real_feats) != len(fake_feats) or not real_feats:
        raise ValueError("feature matching needs the same non-zero number of real and fake feature maps")
    return sum(F.l1_loss(f, r.detach()) for r, f in zip(real_feats, fake_feats)) / len(real_feats)


LPIPS_NETS = ("alex", "vgg", "squeeze")


def _backbone_weights(net: str):
    from torchvision import models

    return {"alex": models.AlexNet_Weights.IMAGENET1K_V1,
            "vgg": models.VGG16_Weights.IMAGENET1K_V1,
            "squeeze": models.SqueezeNet1_1_Weights.IMAGENET1K_V1}[net]


def lpips_backbone_path(net: str = "alex") -> Path:
    """Where torchvision keeps (and lpips would download) the backbone file for ``net``."""
    if net not in LPIPS_NETS:
        raise ValueError(f"unknown LPIPS net {net!r} (known: {', '.join(LPIPS_NETS)})")
    url = _backbone_weights(net).url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def lpips_available(net: str = "alex") -> tuple[bool, str]:
    """(True, path) when LPIPS can run with real weights offline; else (False, the reason)."""
    for pkg in ("lpips", "torchvision"):
        if importlib.util.find_spec(pkg) is None:
            return False, f"the '{pkg}' package is not installed"
    path = lpips_backbone_path(net)
    if not path.is_file():
        return False, (f"LPIPS backbone weights for '{net}' are not in the torch hub cache ({path}); "
                       f"copy that file there to enable LPIPS (nothing is downloaded)")
    return True, str(path)


class LPIPSLoss(nn.Module):
    """LPIPS distance with real backbone weights from the local cache; images in [-1, 1].

    Raises FactoryError when the weights are not cached. The wrapped network is frozen.
    """

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        ok, why = lpips_available(net)
        if not ok:
            raise FactoryError(f"LPIPS unavailable: {why}")
        import lpips

        # The backbone file is in the hub cache (checked above), so torchvision loads it from disk.
        self.model = lpips.LPIPS(net=net, pretrained=True, verbose=False).eval()
        self.model.requires_grad_(False)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.model(output, target, normalize=False).mean()


def make_lpips(net: str = "alex") -> tuple[LPIPSLoss | None, str]:
    """(LPIPSLoss, path) when available, else (None, reason) so callers can report it as unavailable."""
    ok, why = lpips_available(net)
    return (LPIPSLoss(net), why) if ok else (None, why)
