"""Nine colour curves after a generator's output, as 1x1 convolutions (so an ONNX editor carries them).

Output channel c is ``sum_i f_ci(y_i)``, each ``f_ci`` piecewise linear in the output's channel i on K evenly spaced
knots over [-1, 1], continued straight beyond them; curves that also read the photo add nine more of the photo's
channels the same way (``factory.runtime.colour_curves.fit_curve_knots`` fits the knot values). A piecewise-linear
function is a line plus one ramp ``relu(t - j)`` per inner knot j (``t``: the channel's place on the knots),
weighted by the change of slope there: one conv is the line (``linear``), one makes the ramps' arguments
(``spread``), a Relu the ramps, one conv sums them (``mix``). Conv, Relu, Add (and a Concat with the photo) only, so
it runs on every delegate the generator does, and the identity curves leave every value as it is (in range or not).
The per-concept convs' weights (``linear``, ``mix``) are rounded to float16-exact values, so a float16 filter pack
stores them exactly (a change of a fraction of an output level in 0-255: at most 0.18 in
``tests/test_output_calibration.py``'s fit).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _half_exact(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).half().float()


#: the inputs output curves may read: the generator's output (3 channels), or its output and the photo (6)
CURVE_INPUTS = (3, 6)


class OutputCurves(nn.Module):
    """``forward(y, photo)`` (B x 3 x H x W each, [-1, 1] the colour range) -> the curves' output on the same scale
    (not clipped); ``knots``: 3 outputs x C inputs x K (>= 3) knot values with colours in [0, 1], C = 3 (curves of
    the output ``y``) or 6 (of ``y`` and of the ``photo``). Not trained: its convs are fixed at construction."""

    def __init__(self, knots: np.ndarray | torch.Tensor) -> None:
        super().__init__()
        w = np.asarray(knots, dtype=np.float64)
        if w.ndim != 3 or w.shape[0] != 3 or w.shape[1] not in CURVE_INPUTS or w.shape[2] < 3:
            raise ValueError(f"output curves need 3 x C x K knot values (C of {CURVE_INPUTS}, K >= 3), got {w.shape}")
        n, k = w.shape[1], w.shape[2]
        self.reads_photo = n == 6
        half = (k - 1) / 2  # t = half * (y + 1): the knots at t = 0 .. K - 1
        slopes = np.diff(w, axis=2)  # per knot interval, colour per knot step
        bends = np.diff(slopes, axis=2)  # 3 x 3 x (K - 2): the change of slope at each inner knot
        self.linear = nn.Conv2d(n, 3, 1)
        self.spread = nn.Conv2d(n, n * (k - 2), 1)
        self.mix = nn.Conv2d(n * (k - 2), 3, 1, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(_half_exact(2 * half * slopes[..., 0])[:, :, None, None])
            self.linear.bias.copy_(_half_exact(2 * (w[..., 0] + half * slopes[..., 0]).sum(1) - 1))
            self.spread.weight.zero_()
            for i in range(n):
                self.spread.weight[i * (k - 2):(i + 1) * (k - 2), i] = half
            self.spread.bias.copy_(torch.tensor([half - j for _ in range(n) for j in range(1, k - 1)]))
            self.mix.weight.copy_(_half_exact(2 * bends.reshape(3, n * (k - 2)))[:, :, None, None])
        self.requires_grad_(False)
        self.knots = k

    def forward(self, y: torch.Tensor, photo: torch.Tensor | None = None) -> torch.Tensor:
        if self.reads_photo:
            if photo is None:
                raise ValueError("these output curves also read the photo: pass it")
            y = torch.cat([y, photo], 1)
        return self.linear(y) + self.mix(torch.relu(self.spread(y)))
