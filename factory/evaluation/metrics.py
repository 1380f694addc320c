"""Image quality against the teacher's target, per image.

* pixel metrics: PSNR, SSIM (kornia) and L1 on [0, 1];
* ``psnr_quarter``: PSNR after both images are averaged down 4x (area): tone and colour fidelity
  apart from texture phase, so a grain or halftone pattern of the right strength in the wrong place
  is not punished as noise;
* weight-free perceptual/structural metrics from piq (no downloaded weights): HaarPSI and FSIM
  (higher is better, 1 = identical), MS-SSIM (as many scales as the size allows) and GMSD (a
  distance: lower is better).

``learned(student, identity)`` is the rule a report and the benchmarks use to call a concept
learned: the student beats the unchanged source on PSNR *and* on every structural metric (pixel
metrics alone misjudge structural concepts: a washed-out grey image can beat identity in PSNR).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: name -> True when higher is better
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "l1": False, "psnr_quarter": True, "haarpsi": True, "fsim": True,
                    "ms_ssim": True, "gmsd": False}
STRUCTURAL = ("haarpsi", "fsim", "gmsd")
BASIC = ("psnr", "ssim", "l1")


def _unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped (student outputs may overshoot slightly)."""
    return x.clamp(-1, 1).add(1).mul(0.5)


def _psnr(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    mse = (p - t).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1.0 / mse)


def _ms_ssim(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    import piq

    weights = torch.tensor([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
    scales = 1
    while scales < len(weights) and min(p.shape[-2:]) > 10 * 2 ** scales:  # 11-px windows at every scale
        scales += 1
    w = weights[:scales] / weights[:scales].sum()
    return piq.multi_scale_ssim(p, t, data_range=1.0, reduction="none", scale_weights=w)


@torch.no_grad()
def quality(pred: torch.Tensor, target: torch.Tensor, full: bool = True) -> dict[str, torch.Tensor]:
    """Per-image metrics of ``pred`` vs ``target``, both Bx3xHxW in [-1, 1]: ``BASIC`` always, all of
    ``HIGHER_IS_BETTER`` with ``full`` (the piq metrics cost more: training curves use the basic ones)."""
    import kornia.metrics as KM

    p, t = _unit(pred.float()), _unit(target.float())
    window = 11 if min(p.shape[-2:]) >= 11 else (min(p.shape[-2:]) // 2) * 2 - 1
    out = {"psnr": _psnr(p, t), "ssim": KM.ssim(p, t, window_size=window).flatten(1).mean(1),
           "l1": (p - t).abs().flatten(1).mean(1)}
    if not full:
        return out
    import piq

    out["psnr_quarter"] = _psnr(F.avg_pool2d(p, 4), F.avg_pool2d(t, 4))
    out["haarpsi"] = piq.haarpsi(p, t, data_range=1.0, reduction="none")
    out["fsim"] = piq.fsim(p, t, data_range=1.0, reduction="none")
    out["ms_ssim"] = _ms_ssim(p, t)
    out["gmsd"] = piq.gmsd(p, t, data_range=1.0, reduction="none")
    return out


def falls_short(student: dict[str, float], identity: dict[str, float]) -> list[str]:
    """The metrics among PSNR and the structural ones on which a student does not beat the unchanged source."""
    names = ["psnr", *[m for m in STRUCTURAL if m in student and m in identity]]
    return [m for m in names if not ((student[m] > identity[m]) if HIGHER_IS_BETTER[m] else (student[m] < identity[m]))]


def learned(student: dict[str, float], identity: dict[str, float]) -> bool:
    """Whether a student beats the unchanged source on PSNR and on every structural metric it has."""
    return not falls_short(student, identity)
