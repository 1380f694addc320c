"""Image quality against the teacher's target: PSNR, SSIM (kornia) and L1, per image."""

from __future__ import annotations

import torch


def _unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped (student outputs may overshoot slightly)."""
    return x.clamp(-1, 1).add(1).mul(0.5)


@torch.no_grad()
def quality(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image PSNR (dB), SSIM and L1 (on [0, 1]) of ``pred`` vs ``target``, both Bx3xHxW in [-1, 1]."""
    import kornia.metrics as KM

    p, t = _unit(pred.float()), _unit(target.float())
    mse = (p - t).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    window = 11 if min(p.shape[-2:]) >= 11 else (min(p.shape[-2:]) // 2) * 2 - 1
    ssim = KM.ssim(p, t, window_size=window).flatten(1).mean(1)
    return {"psnr": 10 * torch.log10(1.0 / mse), "ssim": ssim, "l1": (p - t).abs().flatten(1).mean(1)}
