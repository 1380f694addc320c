"""The dots stage: a halftone screen's ink drawn at any scale, with edges one output pixel wide.

A network that reads a lattice's distance planes (``base_gan.lattice``) still draws a dot as a soft blob once the
cell is large: on a 12 MP photo a cell is over 100 px and the teacher's edge is one pixel, a slope no conv stack
trained on 5 px cells reproduces. The teacher draws a dot as ``coverage = smoothstep`` of ``radius - distance``
over one pixel, the radius following the (smooth) tone. This stage does the same: the network predicts, per pixel,
the radius (in cells) and how much ink to lay (``gate``), and the stage thresholds one of the lattice's distance
planes at that radius over the width of one output pixel, which it reads from the position input itself (how far
apart neighbouring pixels are, in cells). The ink's colour is one learned RGB value. The output is
``y + gate * coverage * (ink - y)``: with ``gate`` at zero (its conv starts at zero) the generator edits exactly
as without the stage.

Ops: Conv, Sqrt, Add, Div, Sigmoid, Clip(-1, 1), Mul, Sub only, so the editor stays whole on NNAPI (Clip(-1, 1) is
its RELU1) and CoreML MLProgram (which lacks Abs and Min: both are written with Sqrt); no Slice.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from base_gan.lattice import SCALE

#: the radius the network can ask for, in cells (hypot(0.5, 0.5) = 0.707 covers the whole cell)
RADIUS_MAX = 0.75
#: the radius and gate convs' outputs are multiplied by this: the gate must open from 0 to about 1 within a 90-120 s
#: fine-tune's 200-300 steps, and an Adam step moves a weight by about the learning rate (3e-3 for a LoRA)
GAIN = 10.0
#: added to the pixel step (cells per output pixel) so the photo's first row, whose step is read as zero, stays finite
STEP_EPS = 1e-4


def check_dots(plane: int, lattice: list[list[float]] | None) -> None:
    """ValueError unless ``plane`` picks one of the four distance planes of a two-wave ``lattice``."""
    if not lattice or len(lattice) != 2:
        raise ValueError("the dots stage needs a screen lattice of two waves (its distance planes)")
    if not 0 <= int(plane) < 4:
        raise ValueError(f"screen_dots picks one of a lattice's 4 distance planes (0-3), got {plane}")


def dot_buffers(plane: int, lattice: list[list[float]]) -> dict[str, torch.Tensor]:
    """The fixed tensors of ``Dots``: a 1x1 conv picking distance plane ``plane`` of ``lattice_planes``' output and
    turning it back into cells, and the two 3x1 convs giving each pixel's forward and backward step along the rows
    of the position, in cells (the waves' mean frequency folded in)."""
    check_dots(plane, lattice)
    count = 2 * len(lattice) + 4
    select = torch.zeros(1, count, 1, 1)
    select[0, 2 * len(lattice) + int(plane)] = 1.0 / SCALE  # planes are S hypot - 1
    cycles = sum(math.hypot(fy, fx) for fy, fx, _ in lattice) / len(lattice)  # cycles per pair pixel
    forward, backward = torch.zeros(1, 2, 3, 1), torch.zeros(1, 2, 3, 1)
    forward[0, 0, :, 0] = torch.tensor([0.0, -cycles, cycles])   # row i+1 - row i
    backward[0, 0, :, 0] = torch.tensor([-cycles, cycles, 0.0])  # row i - row i-1
    return {"dots_select": select, "dots_select_bias": torch.full((1,), 1.0 / SCALE),
            "dots_forward": forward, "dots_backward": backward}


def _magnitude(a: torch.Tensor) -> torch.Tensor:
    """|a| as sqrt(a * a): CoreML MLProgram has no Abs."""
    return torch.sqrt(a * a)


def _smaller(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """min(a, b) as (a + b - |a - b|) / 2: CoreML MLProgram has no Min."""
    return 0.5 * (a + b - _magnitude(a - b))


class Dots(nn.Module):
    """Ink dots thresholded from a lattice distance plane at a predicted radius, one output pixel soft."""

    def __init__(self, c: int, plane: int, lattice: list[list[float]]) -> None:
        super().__init__()
        self.radius = nn.Conv2d(c, 1, 3, padding=1)
        self.gate = nn.Conv2d(c, 1, 3, padding=1)
        self.ink = nn.Parameter(torch.full((1, 3, 1, 1), -1.0))  # black
        for name, value in dot_buffers(plane, lattice).items():  # not saved: rebuilt from the config
            self.register_buffer(name, value, persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for conv in (self.radius, self.gate):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.ink.fill_(-1.0)

    def coverage(self, features: torch.Tensor, planes: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """[B, 1, H, W] in [0, 1]: the smoothstep of (radius - distance) over one output pixel (the teacher's)."""
        dtype = planes.dtype
        distance = F.conv2d(planes, self.dots_select.to(dtype), self.dots_select_bias.to(dtype))
        ahead = F.conv2d(position, self.dots_forward.to(dtype), padding=(1, 0))
        behind = F.conv2d(position, self.dots_backward.to(dtype), padding=(1, 0))
        step = _smaller(_magnitude(ahead), _magnitude(behind)) + STEP_EPS
        radius = RADIUS_MAX * torch.sigmoid(GAIN * self.radius(features))
        s = torch.clamp((radius - distance) * 2 / step, -1.0, 1.0)  # t = (s + 1) / 2 in [0, 1]
        return 0.5 + s * (0.75 - 0.25 * s * s)  # t^2 (3 - 2t)

    def forward(self, y: torch.Tensor, features: torch.Tensor, planes: torch.Tensor,
                position: torch.Tensor) -> torch.Tensor:
        """``y`` [B, 3, H, W] with ink laid where the dots cover it; ``features`` are the head's last (full
        resolution), ``planes`` the lattice's (``lattice_planes``) and ``position`` the pixels' (row, col)."""
        return y + GAIN * self.gate(features) * self.coverage(features, planes, position) * (self.ink - y)


def dot_plane(source: torch.Tensor, target: torch.Tensor, lattice: list[list[float]]) -> int:
    """Which of ``lattice``'s four distance planes the dots are centred on: the one whose distance best follows the
    pairs' mean residual luminance (``source``, ``target`` [N, 3, H, W]; ink darkest at a dot's centre)."""
    from base_gan.lattice import lattice_buffers, lattice_planes
    from factory.data.screen_fit import anchored_features

    check_dots(0, lattice)
    residual = anchored_features(source, target)[0].mean(0).double()
    h, w = residual.shape
    grid = torch.stack(torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                                      indexing="ij"))[None]  # (row, col) of every pixel
    planes = lattice_planes(lattice_buffers(lattice), grid)[0, 2 * len(lattice):]
    residual = residual - residual.mean()
    scores = []
    for plane in planes.double():
        plane = plane - plane.mean()
        scores.append(float((plane * residual).sum() / (plane.norm() * residual.norm()).clamp(min=1e-12)))
    return max(range(len(scores)), key=scores.__getitem__)
