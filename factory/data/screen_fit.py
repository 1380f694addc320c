"""A concept's fixed screen: the lattice of a pattern anchored at the same place in every teacher output.

A halftone screen, pixel blocks or scanlines sit at the same pixel positions in every target, whatever the
photo, so averaging over the pairs keeps them while photo content (and random texture such as grain)
averages out. ``fit_screen_waves`` looks for sharp peaks in the power spectrum of two such coherent means,
the mean residual (target - source; a halftone's dots) and the mean gradient magnitude of the target (the
edges of pixel blocks), keeps those whose phase agrees across the pairs (a strong texture in a few photos
stands out of the mean too, at random phases), and returns the strongest as plane waves [fy, fx] in cycles per
pixel: the generator's ``screen_waves``, whose sin/cos channels let a convolutional network place the pattern.
Concepts without such a pattern (colour maps, painterly filters) give no peak and so no waves.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: frequencies below this (cycles per pixel) are the photo's layout or a vignette, not a screen
MIN_FREQUENCY = 1 / 24
#: a peak counts when its power is this many times the median power at the same frequency in other directions
MIN_CONTRAST = 40.0
#: a second wave counts when its contrast is at least this share of the first's (not the first's side lobes)
RELATIVE = 0.05
#: a peak counts only where the pairs agree on its phase (``_phase_coherence``): a screen gives about 1
MIN_COHERENCE = 0.5
#: peaks looked at before giving up (the ones photo content gives are skipped)
MAX_CANDIDATES = 24
#: the spectrum is zero-padded by this factor, for a finer frequency estimate
PAD = 4


def _luma(x: torch.Tensor) -> torch.Tensor:
    return 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]


def _gradient_magnitude(y: torch.Tensor) -> torch.Tensor:
    gx = F.pad(y[..., :, 1:] - y[..., :, :-1], (0, 1))
    gy = F.pad(y[..., 1:, :] - y[..., :-1, :], (0, 0, 0, 1))
    return (gx.square() + gy.square()).sqrt()


def anchored_features(source: torch.Tensor, target: torch.Tensor) -> list[torch.Tensor]:
    """[N, H, W] maps per pair in which a fixed screen sits at the same place in every pair: the residual
    luminance and the gradient magnitude of the target's luminance (``source``, ``target`` [N, 3, H, W])."""
    ys, yt = _luma(source.float()), _luma(target.float())
    return [yt - ys, _gradient_magnitude(yt)]


def _hann(h: int, w: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[H, W]: the 2-D Hann window the spectra are taken through."""
    return (torch.hann_window(h, periodic=False, dtype=dtype)[:, None]
            * torch.hann_window(w, periodic=False, dtype=dtype)[None, :])


def _fft(m: torch.Tensor) -> torch.Tensor:
    """The zero-padded 2-D FFT of Hann-windowed maps [..., H, W] (each less its mean)."""
    h, w = m.shape[-2:]
    window = _hann(h, w)
    return torch.fft.fft2((m - m.mean((-2, -1), keepdim=True)) * window, s=(PAD * h, PAD * w))


def _phase_coherence(maps: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """|mean over pairs of F / |F||: 1 where every pair has the component at the same phase (a screen), about
    1/sqrt(N) where phases are random (photo texture, even a strong texture in a few photos)."""
    total = None
    for start in range(0, len(maps), chunk):
        f = _fft(maps[start : start + chunk])
        unit = (f / f.abs().clamp(min=1e-12)).sum(0)
        total = unit if total is None else total + unit
    return total.abs() / len(maps)


def _refine(power: torch.Tensor, i: int, j: int) -> tuple[float, float]:
    """Sub-bin peak position by a parabola through the peak and its neighbours on each axis."""
    n, m = power.shape

    def offset(a: float, b: float, c: float) -> float:
        den = a - 2 * b + c
        return 0.0 if den >= 0 else 0.5 * (a - c) / den

    lp = power.clamp(min=1e-30).log()
    di = offset(float(lp[(i - 1) % n, j]), float(lp[i, j]), float(lp[(i + 1) % n, j]))
    dj = offset(float(lp[i, (j - 1) % m]), float(lp[i, j]), float(lp[i, (j + 1) % m]))
    return i + di, j + dj


def fit_screen_waves(source: torch.Tensor, target: torch.Tensor, max_waves: int = 2,
                     min_contrast: float = MIN_CONTRAST) -> list[list[float]]:
    """Up to ``max_waves`` plane waves [fy, fx] (cycles per pixel, rounded to 1e-5) of the pattern anchored in
    ``target`` (the strongest peaks first; none when no peak stands ``min_contrast`` times above the band)."""
    if source.shape != target.shape or source.dim() != 4 or len(source) < 2:
        raise ValueError(f"need at least 2 pairs of [N, 3, H, W] sources and targets, got {tuple(source.shape)} "
                         f"and {tuple(target.shape)}")
    _, _, h, w = target.shape
    fy = torch.fft.fftfreq(PAD * h)[:, None]
    fx = torch.fft.fftfreq(PAD * w)[None, :]
    radius = (fy.square() + fx.square()).sqrt()
    band = (radius >= MIN_FREQUENCY) & ((fx > 0) | ((fx == 0) & (fy > 0)))  # one of each conjugate pair
    ring = (radius * PAD * min(h, w) / 2).round().long()  # rings about 2 bins wide
    scores, powers, coherence = [], [], []
    for maps in anchored_features(source, target):
        power = _fft(maps.mean(0)).abs().square()  # the coherent mean keeps what is in place in every pair
        powers.append(power)
        coherence.append(_phase_coherence(maps))
        level = torch.zeros_like(power)
        for r in ring[band].unique():  # the median power at the same frequency in every direction
            on = band & (ring == r)
            level[on] = power[on].median()
        scores.append(torch.where(band, power / level.clamp(min=1e-30), torch.zeros_like(power)))
    contrast = torch.stack(scores).amax(0)
    which = torch.stack(scores).argmax(0)
    searched = contrast.clone()  # zero outside the band already
    n, m = searched.shape

    def near(i: float, j: float) -> tuple[int, int]:
        """The strongest bin within one bin of (i, j) (signed bin indices)."""
        cells = [((round(i) + a) % n, (round(j) + b) % m) for a in (-1, 0, 1) for b in (-1, 0, 1)]
        return max(cells, key=lambda c: float(contrast[c]))

    waves: list[list[float]] = []
    first = 0.0
    guard = 3 * PAD  # bins around a found peak (and its conjugate) that are not searched again

    def suppress(i: int, j: int, harmonics: int) -> None:
        bi, bj = _signed(i, n), _signed(j, m)
        for k in range(-harmonics, harmonics + 1):  # the peak, its conjugate (and their harmonics)
            if k == 0 and harmonics:
                continue
            rows = [(k * bi + a) % n for a in range(-guard, guard + 1)]
            cols = [(k * bj + a) % m for a in range(-guard, guard + 1)]
            searched[torch.tensor(rows)[:, None], torch.tensor(cols)[None, :]] = 0

    for _ in range(MAX_CANDIDATES):
        if len(waves) == max_waves:
            break
        i, j = divmod(int(searched.argmax()), m)
        peak = float(searched[i, j])
        if peak < max(min_contrast, RELATIVE * first):
            break
        if float(coherence[int(which[i, j])][i, j]) < MIN_COHERENCE:  # photo content, not a screen
            suppress(i, j, 1)
            continue
        first = first or peak
        si, sj = _signed(i, n), _signed(j, m)
        for d in (4, 3, 2):  # lines and blocks have harmonics as strong as the fundamental: take the lowest
            ci, cj = near(si / d, sj / d)
            if (math.hypot(_signed(ci, n) / n, _signed(cj, m) / m) >= MIN_FREQUENCY
                    and float(contrast[ci, cj]) >= min_contrast):
                i, j = ci, cj
                break
        ri, rj = _refine(powers[int(which[i, j])], i, j)
        waves.append([round(_wrap(ri / n), 5), round(_wrap(rj / m), 5)])
        suppress(i, j, 8)
    return waves


def with_harmonics(waves: list[list[float]]) -> list[list[float]]:
    """``waves`` followed by their second harmonics: every wave doubled and the sum and difference of every two, each
    kept when within +-0.5 cycles per pixel (the generator's range) and not already there (or its conjugate). A round
    dot or a square block is a sharp shape inside the screen's cell: from the fundamental sines alone a network draws
    it as a soft blob of the wrong shape, which shows once the cell is large (a full-size photo); the harmonics give
    it the shape's next terms."""
    extra = [[2 * fy, 2 * fx] for fy, fx in waves]
    for i, (ay, ax) in enumerate(waves):
        for by, bx in waves[i + 1:]:
            extra += [[ay + by, ax + bx], [ay - by, ax - bx]]
    known = {(round(fy, 5), round(fx, 5)) for fy, fx in waves}
    out = [list(w) for w in waves]
    for fy, fx in extra:
        key = (round(fy, 5), round(fx, 5))
        if max(abs(fy), abs(fx)) <= 0.5 and key not in known and (-key[0], -key[1]) not in known:
            known.add(key)
            out.append([key[0], key[1]])
    return out


def fit_lattice(source: torch.Tensor, target: torch.Tensor, waves: list[list[float]]) -> list[list[float]]:
    """The screen's lattice for ``base_gan.lattice``: the first fitted wave and the first later one not parallel to
    it, each as [fy, fx, offset], ``offset`` (cycles, rounded to 1e-4) putting the extremes of its component in the
    pairs' coherent mean maps (``anchored_features``) at whole and half cycles of ``fy * row + fx * col + offset``.
    Of the two maps, the one where that component is the larger share of the map is used. [] without waves."""
    if not waves:
        return []
    chosen = [waves[0]]
    for fy, fx in waves[1:]:
        ay, ax = waves[0]
        if abs(ay * fx - ax * fy) > 0.1 * math.hypot(ay, ax) * math.hypot(fy, fx):  # over ~6 degrees apart
            chosen.append([fy, fx])
            break
    maps = [m.mean(0).double() for m in anchored_features(source, target)]
    h, w = maps[0].shape
    window = _hann(h, w, torch.float64)
    rows = torch.arange(h, dtype=torch.float64)[:, None]
    cols = torch.arange(w, dtype=torch.float64)[None, :]
    lattice = []
    for fy, fx in chosen:
        basis = torch.exp(-2j * math.pi * (fy * rows + fx * cols))
        best, offset = -1.0, 0.0
        for m in maps:
            centred = (m - m.mean()) * window
            z = (centred * basis).sum()
            share = float(z.abs() / centred.square().sum().sqrt().clamp(min=1e-12))
            if share > best:  # m ~ |z| cos(2 pi (f . x) + angle z): extremes where f . x + angle / 2 pi is k / 2
                best, offset = share, float(torch.angle(z)) / (2 * math.pi)
        lattice.append([fy, fx, round(offset - math.floor(offset + 0.5), 4)])
    return lattice


def _signed(i: int, n: int) -> int:
    """A bin index of an n-point FFT as a signed frequency bin."""
    return i - n if i >= n // 2 else i


def _wrap(f: float) -> float:
    """A frequency in cycles per pixel folded into [-0.5, 0.5)."""
    return f - math.floor(f + 0.5)
