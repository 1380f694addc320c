"""E2GAN-shaped, text-conditioned, mobile-sized image-to-image generator.

Layout (``c = ngf``; strides relative to the input, which must be a multiple of 16 on each side)::

    stem   conv1 3->c/2 (/1), conv2 ->c (/2), conv3 ->c (/4)              skips s1, s2, s4
    down1  conv 3x3 stride 2 -> 2c (/8)
    res1, res2                                  (2c, /8)                  skip s8
    down2  conv 3x3 stride 2 -> 4c (/16)        at 256 px: 16x16 = 256 tokens
    attn   self-attention      (q, k, v, out)   tokens [B, N, 4c]
    xattn  cross-attention on the text tokens (q, k, v, out; plus a learned null key)
    ff     feed-forward        (fc1, fc2)
    up1    nearest x2 + conv -> 2c (/8)  + s8
    res3                                        (2c, /8)
    up2    nearest x2 + conv -> c  (/4)  + s4
    head   nearest x2 + conv1 -> c (/2) + s2, nearest x2 + conv2 -> c/2 (/1) + s1, conv3 -> 3 = delta
           (with ``colour_basis``: + colour, a 1x1 conv over the source pixel's colour monomials;
            with ``lens_basis``: + lens, a 1x1 conv over the source's 3x3 neighbours and its radial gain planes)
    output = soft_bound(source + delta)

Decisions (see DESIGN.md section 3 for the measurements that motivated them):

* Stride 16 before the transformer: the stem downsamples by 4 with two strided convs, so the
  attention sees at most 16x16 tokens at 256 px; dropout is 0 everywhere.
* Additive U-Net skips (s1..s8) carry full-resolution detail past the 16x16 bottleneck; without
  them every output pixel would be reconstructed from a 16x16 map. They are plain Adds.
* Global residual: ``output = soft_bound(source + delta)``: the identity on [-1, 1], a tanh
  shoulder (0.1 high) plus a 0.05 leak beyond, so the derivative is 1 for every in-range pixel and
  never below 0.05 anywhere (``soft_bound``). The head's last conv starts at a tiny scale, so at
  init the output is the source to within ~1e-2 (mean ~5e-3) and gradients reach every layer. No
  hard clamp: the prototype showed a clamp stalls concepts far from identity (pixels pushed past
  it get no gradient back). Outputs can exceed ±1 slightly; clip only when converting to pixels.
  ``output="tanh_residual"`` gives ``tanh(atanh(clamp(source, ±0.999)) + delta)`` instead: the
  literal tanh head, also identity at init, but its gradient at saturated source pixels is
  ``1 - 0.999² = 0.002`` and vanishes wherever the output saturates. Measured here (L1 only,
  128 px, batch 8, 400 steps, ngf 32, 7 train / 3 held-out scikit-image photos; held-out PSNR
  residual vs tanh_residual, identity in brackets): pencil sketch 11.5 vs 12.2 dB (8.1), OpenCV
  stylization 22.7 vs 22.6 (18.5), colour inversion 21.6 vs 21.6 (6.6). No decisive difference
  at that budget; the default follows the prototype's longer runs (DESIGN.md section 3).
* Padding: zero padding inside each conv (``padding=1``). It exports as part of the Conv node (no
  Pad op at all), NNAPI/CoreML take it, and peft's Conv2d LoRA branch copies ``padding`` (it
  ignores ``padding_mode``), so the LoRA path pads exactly like the base conv. Reflection padding
  is not used anywhere.
* Upsampling: nearest resize x2 + 3x3 conv (ONNX Resize, asymmetric/nearest/floor, the mode
  NNAPI and CoreML accept); no ConvTranspose2d (peft cannot adapt it, checkerboards, delegates
  lack it).
* Export: under ``torch.onnx.export(..., dynamo=False)`` the token reshapes and the upsampling use
  small custom symbolics (``to_tokens``, ``from_tokens``, ``upsample2x``) so that a fixed-size
  export is shape-static end to end (no Shape/Gather/Expand/Where nodes; Resize gets an explicit
  empty roi). Measured at 256 px, opset 17, text baked in as constants: onnxruntime's mobile
  usability checker puts all nodes in one NNAPI partition and one CoreML MLProgram partition.
  The legacy CoreML NeuralNetwork format lacks ReduceMean (``TokenNorm``) and MatMul with two
  dynamic inputs (attention), so the transformer block stays on CPU there: use MLProgram.
  Dynamic batch/height/width exports work too (then with a few Shape nodes).
* Normalization: none in the conv path (``norm="none"``, default); the residual branches start
  small instead (res conv2, attention/feed-forward outputs scaled by 0.1 at init), so activations
  keep their scale without statistics. Alternatives and why they are not the default:
  BatchNorm folds into the conv at export, but its running statistics are buffers that a LoRA
  adapter does not carry (a concept fine-tuned in train mode drifts them away from the base), and
  batches mix concepts; GroupNorm exports at opset 17 as Reshape + InstanceNormalization, which
  NNAPI lacks; InstanceNorm is excluded outright. ``norm="group"`` and ``norm="batch"`` remain
  available for measurement.
* Activation LeakyReLU(0.2) (``act``): exports to LeakyRelu, supported by NNAPI and CoreML, and
  does not die without normalization. GELU would export as Erf (not on NNAPI).
* Text: ``forward(x, text_tokens=None, text_mask=None)`` with tokens [B or 1, L, text_dim] and a
  bool mask [B or 1, L] (a batch of 1 is shared by all images). The null key is always there;
  without text it is the only key, so the cross-attention adds a learned constant (a base
  trained with some text dropped therefore also works text-free).

Module names for LoRA (``LAYER_GROUPS``): stem.conv{1,2,3}, down1.conv, res{i}.conv{1,2}, down2.conv,
attn.{q,k,v,out}, xattn.{q,k,v,out}, ff.{fc1,fc2}, up1.conv, up2.conv, head.conv{1,2,3}. ``head.colour`` (the
colour basis's conv) and ``head.lens`` (the lens basis's) are in no group: a LoRA run trains them whole (peft's
``modules_to_save``).
"""

from __future__ import annotations

import math
import re
from itertools import combinations_with_replacement

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from base_gan.attention import CrossAttention, FeedForward, SelfAttention
from base_gan.lattice import lattice_buffers, lattice_planes, plane_count

STRIDE = 16  # the generator's total downsampling; H and W must be multiples of it

# group name -> regular expressions (full match) over module names of the Conv2d/Linear layers.
# Use ``target_modules(model, groups)`` for peft's list form or ``target_regex(groups)`` for its
# string (re.fullmatch) form.
LAYER_GROUPS: dict[str, list[str]] = {
    "stem": [r"stem\.conv\d+"],
    "down1": [r"down1\.conv"],
    "res": [r"res\d+\.conv\d+"],
    "down2": [r"down2\.conv"],
    "attn": [r"attn\.(q|k|v|out)"],
    "xattn": [r"xattn\.(q|k|v|out)"],
    "ff": [r"ff\.fc\d+"],
    "up1": [r"up1\.conv"],
    "up2": [r"up2\.conv"],
    "head": [r"head\.conv\d+"],
    "film": [r"text_film\.\w+"],
}
#: FiLM (``film=True``): per-channel scale and shift from the pooled text at these feature maps, by width
FILM_SITES = {"s4": 1, "d1": 2, "u1": 2, "u2": 1, "h1": 1, "h2": 0.5}

OUTPUT_MARGIN = 0.1   # soft bound: height of the tanh shoulder beyond ±1
OUTPUT_LEAK = 0.05    # soft bound: minimum slope outside [-1, 1]
HEAD_INIT_SCALE = 5e-4  # std of head.conv3's weights at init -> |delta| ~ 5e-3
BRANCH_INIT_SCALE = 0.1  # residual branch outputs (res conv2, attn/xattn out, ff fc2) at init


#: coordinate channels (``screen_periods``): sin and cos of the pixel row and column at these periods, for
#: position-dependent patterns (a fixed halftone screen, scanlines) that a translation-equivariant network
#: cannot place. Each period divides the stride, so the phase is the same in every stride-aligned tile.
#: ``screen_waves`` instead gives sin/cos of plane waves at any frequency and angle (a 45-degree halftone screen
#: of cell 5 repeats every 7.07 px along each axis), fitted to a concept's targets (``factory.data.screen_fit``),
#: read by the stem's own ``waves`` conv; their phase follows the ``position`` input (default: the pixel grid
#: from the image's corner), so a tile passes its offset and a resized photo its scale.
SCREEN_PERIODS = (4, 8, 16)

#: the colour basis (``colour_basis``, a degree): every monomial of the source pixel's R, G and B up to that degree
#: (3, 9, 19, 34 or 55 of them), read by ``head.colour``, a 1x1 conv that starts at zero, into the delta. A
#: per-pixel colour map (curves, channel mixes, saturation, tints) is then linear in weights the readout start
#: solves in closed form (``factory.lora.readout``), instead of being learnt by steps through the whole network.
COLOUR_DEGREES = (1, 2, 3, 4, 5)

#: the lens basis (``lens_basis``): what a per-pixel colour map cannot hold, read by ``head.lens``, a 1x1 conv that
#: starts at zero, into the delta, and solved by the readout like the colour basis: the source's 8 neighbours per
#: channel (a blur or a sharpening; zero padding, as every conv here) and the source's colour and a constant times
#: d^2, d^4, d^6, d the distance from the frame's centre (1 at the corners, as the classic ``vignette`` measures
#: it): a vignette's gain. Chosen on validation concepts (bench/results/lens-ceiling-validation.md: fitted in
#: closed form beside the degree-3 monomials, +13.63 dB mean on seven concepts with a blur or a vignette, -0.01 on
#: four without). The radial planes are of the frame the network sees: a tiled full-size photo would need each
#: tile's place in the frame.
LENS_OFFSETS = tuple((dy, dx) for dy in range(3) for dx in range(3) if (dy, dx) != (1, 1))
LENS_POWERS = (1, 2, 3)
LENS_PLANES = 3 * len(LENS_OFFSETS) + 4 * len(LENS_POWERS)

ACTIVATIONS = {"lrelu": lambda: nn.LeakyReLU(0.2), "relu": nn.ReLU, "silu": nn.SiLU}
NORMS = {"none", "group", "batch"}
OUTPUTS = {"residual", "tanh_residual"}


def _check_config(ngf: int, heads: int, act: str, norm: str, output: str, image_size: int) -> None:
    """ValueError naming the first argument the generator cannot be built with."""
    if ngf < 4 or ngf % 2:
        raise ValueError(f"ngf must be an even number >= 4, got {ngf}")
    if (4 * ngf) % heads:
        raise ValueError(f"attention width 4*ngf={4 * ngf} is not divisible by heads={heads}")
    for name, value, allowed in (("act", act, ACTIVATIONS), ("norm", norm, NORMS), ("output", output, OUTPUTS)):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {sorted(allowed)}, got {value!r}")
    if image_size % STRIDE:
        raise ValueError(f"image_size must be a multiple of {STRIDE}, got {image_size}")


def _norm(kind: str, ch: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(math.gcd(8, ch), ch)
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    return nn.Identity()


def colour_terms(degree: int) -> list[tuple[int, ...]]:
    """The channel index tuples of the colour monomials up to ``degree`` (r, g, b, rr, rg, ..., bbb)."""
    if degree not in COLOUR_DEGREES:
        raise ValueError(f"colour_basis must be one of {COLOUR_DEGREES}, got {degree}")
    return [t for d in range(1, degree + 1) for t in combinations_with_replacement(range(3), d)]


def colour_monomials(x: torch.Tensor, degree: int) -> torch.Tensor:
    """[B, n, H, W]: every monomial of ``x``'s three channels up to ``degree`` (Slice and Mul under ONNX)."""
    channels = [x[:, i:i + 1] for i in range(3)]
    products: dict[tuple[int, ...], torch.Tensor] = {}
    for t in colour_terms(degree):
        products[t] = channels[t[0]] if len(t) == 1 else products[t[:-1]] * channels[t[-1]]
    return torch.cat(list(products.values()), dim=1)


def lens_shift() -> torch.Tensor:
    """[24, 3, 3, 3]: the fixed conv that copies each channel's 8 neighbours into planes (offset-major)."""
    weight = torch.zeros(3 * len(LENS_OFFSETS), 3, 3, 3)
    for k, (dy, dx) in enumerate(LENS_OFFSETS):
        for c in range(3):
            weight[3 * k + c, c, dy, dx] = 1.0
    return weight


def frame_grid(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """[1, 2, h, w]: the row and the column of every pixel's centre as a fraction of a whole ``h`` x ``w`` frame,
    -1 at its top (left) edge and 1 at its bottom (right) edge (``factory.runtime.position.frame_grid``'s default)."""
    rows = (torch.arange(h, device=like.device, dtype=like.dtype) + (0.5 - h / 2)) * (2.0 / h)
    cols = (torch.arange(w, device=like.device, dtype=like.dtype) + (0.5 - w / 2)) * (2.0 / w)
    return torch.stack([rows[:, None].expand(h, w), cols[None, :].expand(h, w)])[None]


def lens_planes(x: torch.Tensor, shift: torch.Tensor, frame: torch.Tensor | None = None) -> torch.Tensor:
    """[B, LENS_PLANES, H, W]: the lens basis's planes of ``x`` (``LENS_OFFSETS`` neighbours by ``shift``, then
    (1, r, g, b) times d^2k for each of ``LENS_POWERS``). d is the distance from the photo's centre, 1 at its
    corners, from ``frame`` [B or 1, 2, H, W] (each pixel's place in the photo, ``frame_grid``; default: ``x`` is
    the whole photo), so a tile of a large photo gets its part of the photo's vignette, not one of its own."""
    b, _, h, w = x.shape
    if frame is None:
        frame = frame_grid(h, w, x)
    elif not torch.jit.is_tracing() and (frame.shape[1:] != (2, h, w) or frame.shape[0] not in (1, b)):
        raise ValueError(f"frame must be [1 or {b}, 2, {h}, {w}] (row, col per pixel), got {list(frame.shape)}")
    taps = F.conv2d(x, shift.to(x.dtype), padding=1)
    half = torch.full((1, 2, 1, 1), 0.5, device=x.device, dtype=x.dtype)  # a Conv, not a ReduceSum: on every delegate
    d2 = F.conv2d(frame * frame, half)  # [B or 1, 1, H, W], 1 at the corners
    colour = torch.cat([torch.ones_like(x[:, :1]), x], dim=1)
    gains = {1: d2}  # d^2k by products (Mul, on every delegate; Pow is not)
    for k in range(2, max(LENS_POWERS) + 1):
        gains[k] = gains[k - 1] * d2
    radial = [colour * gains[k] for k in LENS_POWERS]
    return torch.cat([taps, *radial], dim=1)


def _conv(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def screen_phase(periods: list[int] | tuple[int, ...]) -> torch.Tensor:
    """[1, 4 * len(periods), STRIDE, STRIDE]: sin/cos of the row, then sin/cos of the column, per period."""
    i = torch.arange(STRIDE, dtype=torch.float32)
    planes = []
    for p in periods:
        if p not in SCREEN_PERIODS:
            raise ValueError(f"screen periods must be among {SCREEN_PERIODS} (divisors of the stride), got {p}")
        angle = 2 * math.pi * i / p
        for f in (torch.sin(angle), torch.cos(angle)):
            planes.append(f[:, None].expand(STRIDE, STRIDE))  # by row
        for f in (torch.sin(angle), torch.cos(angle)):
            planes.append(f[None, :].expand(STRIDE, STRIDE))  # by column
    return torch.stack(planes)[None].contiguous()


def pixel_grid(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """[1, 2, h, w]: the row and the column of every pixel, the grid anchored at the image's top-left corner."""
    rows = torch.arange(h, device=like.device, dtype=like.dtype)[:, None].expand(h, w)
    cols = torch.arange(w, device=like.device, dtype=like.dtype)[None, :].expand(h, w)
    return torch.stack([rows, cols])[None]


def wave_phase(waves: list[list[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight [2K, 2, 1, 1], bias [2K]) of the 1x1 conv that turns (row, col) into each wave's phase, twice: the
    second time shifted by pi/2, so one Sin gives sin then cos (NNAPI has Sin but no Cos)."""
    w = (2 * math.pi) * torch.tensor(waves, dtype=torch.float32).reshape(-1, 2, 1, 1)
    bias = torch.cat([torch.zeros(len(w)), torch.full((len(w),), math.pi / 2)])
    return torch.cat([w, w]), bias


def wave_planes(phase: tuple[torch.Tensor, torch.Tensor], position: torch.Tensor) -> torch.Tensor:
    """[B, 2K, H, W]: sin of every wave's phase, then cos, at each ``position`` [B, 2, H, W] (row, col)."""
    weight, bias = phase
    return torch.sin(F.conv2d(position, weight.to(position.dtype), bias.to(position.dtype)))


class Stem(nn.Module):
    """Full-resolution conv then two stride-2 convs; returns the /4 features and the s1, s2, s4 skips.

    With ``waves`` (the number of screen planes: sin/cos of each wave, and a lattice's distance planes), a second
    full-resolution conv ``waves`` reads them and adds to ``conv1``'s output (a conv over both inputs at once,
    split so a pretrained stem keeps its ``conv1``).
    """

    def __init__(self, c: int, act, norm: str, extra_in: int = 0, waves: int = 0) -> None:
        super().__init__()
        self.conv1 = _conv(3 + extra_in, c // 2)
        if waves:
            self.waves = nn.Conv2d(waves, c // 2, 3, padding=1, bias=False)
        self.conv2 = _conv(c // 2, c, stride=2)
        self.conv3 = _conv(c, c, stride=2)
        self.norm2, self.norm3 = _norm(norm, c), _norm(norm, c)
        self.act = act()

    def forward(self, x: torch.Tensor, planes: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        h = self.conv1(x)
        if planes is not None:
            h = h + self.waves(planes)
        s1 = self.act(h)
        s2 = self.act(self.norm2(self.conv2(s1)))
        s4 = self.act(self.norm3(self.conv3(s2)))
        return s1, s2, s4


class Down(nn.Module):
    """3x3 stride-2 conv, norm, activation."""

    def __init__(self, cin: int, cout: int, act, norm: str) -> None:
        super().__init__()
        self.conv = _conv(cin, cout, stride=2)
        self.norm = _norm(norm, cout)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class Up(nn.Module):
    """Nearest x2 resize, 3x3 conv, norm, add the encoder skip, activation."""

    def __init__(self, cin: int, cout: int, act, norm: str) -> None:
        super().__init__()
        self.conv = _conv(cin, cout)
        self.norm = _norm(norm, cout)
        self.act = act()

    def forward(self, x: torch.Tensor, skip: torch.Tensor, film: tuple | None = None) -> torch.Tensor:
        x = upsample2x(x)
        return self.act(modulate(self.norm(self.conv(x)), film) + skip)


class ResBlock(nn.Module):
    """x + norm(conv2(act(norm(conv1(x))))); no activation after the sum."""

    def __init__(self, c: int, act, norm: str) -> None:
        super().__init__()
        self.conv1 = _conv(c, c)
        self.norm1 = _norm(norm, c)
        self.act = act()
        self.conv2 = _conv(c, c)
        self.norm2 = _norm(norm, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.norm2(self.conv2(self.act(self.norm1(self.conv1(x)))))


class Head(nn.Module):
    """Two nearest x2 + conv stages fused with the s2/s1 skips, then a 3x3 conv to the RGB delta."""

    def __init__(self, c: int, act, norm: str, n_colour: int = 0, lens: bool = False) -> None:
        super().__init__()
        self.conv1 = _conv(c, c)
        self.conv2 = _conv(c, c // 2)
        self.conv3 = _conv(c // 2, 3)
        if n_colour:  # the colour basis's conv over that many monomials
            self.colour = nn.Conv2d(n_colour, 3, 1, bias=False)
        if lens:  # the lens basis's conv over its planes
            self.lens = nn.Conv2d(LENS_PLANES, 3, 1, bias=False)
        self.norm1 = _norm(norm, c)
        self.act = act()

    def forward(self, x: torch.Tensor, s2: torch.Tensor, s1: torch.Tensor, film1: tuple | None = None,
                film2: tuple | None = None) -> torch.Tensor:
        x = self.act(modulate(self.norm1(self.conv1(upsample2x(x))), film1) + s2)
        x = upsample2x(x)
        x = self.act(modulate(self.conv2(x), film2) + s1)
        return self.conv3(x)


def modulate(h: torch.Tensor, film: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """FiLM: ``h * (1 + scale) + shift`` with per-channel [B, C] scale and shift (``h`` unchanged for None)."""
    if film is None:
        return h
    scale, shift = film
    return h * (1.0 + scale[:, :, None, None]) + shift[:, :, None, None]


def pooled_text(text_tokens: torch.Tensor | None, text_mask: torch.Tensor | None, dim: int,
                like: torch.Tensor) -> torch.Tensor:
    """The masked mean of the text tokens [B or 1, D]; zeros [1, D] without text."""
    if text_tokens is None:
        return like.new_zeros(1, dim)
    if text_mask is None:
        return text_tokens.mean(1)
    m = text_mask.to(text_tokens.dtype)[..., None]
    return (text_tokens * m).sum(1) / m.sum(1).clamp(min=1.0)


def soft_bound(y: torch.Tensor, margin: float = OUTPUT_MARGIN, leak: float = OUTPUT_LEAK) -> torch.Tensor:
    """Identity on [-1, 1]; beyond, a tanh shoulder of height ``margin`` plus a ``leak`` slope.

    With e = y - clip(y, -1, 1): ``clip(y) + (1 - leak)·m·tanh(e/m) + leak·e``. The derivative is 1
    inside, continuous at ±1, and never below ``leak`` (so no pixel is ever stuck, unlike a clamp
    or a bare tanh); outputs stay near [-1.1, 1.1] (±1.2 at |y| = 3). Clip/Sub/Mul/Tanh/Add in ONNX.
    """
    inside = y.clamp(-1.0, 1.0)
    excess = y - inside
    return inside + ((1.0 - leak) * margin) * torch.tanh(excess * (1.0 / margin)) + leak * excess


class Generator(ModelMixin, ConfigMixin):
    """The E2GAN-shaped generator; see the module docstring for the layout and the decisions.

    A diffusers model: ``save_pretrained(folder)`` writes ``config.json`` (these arguments) and the
    weights, ``Generator.from_pretrained(folder)`` rebuilds it. ``text_encoder`` names the encoder
    whose token embeddings the cross-attention reads (``factory.text``); ``image_size`` is a hint
    (the size it was trained or exported at; any multiple of 16 works).
    """

    arch = "e2gan"
    stride = STRIDE
    takes_text = True

    @register_to_config
    def __init__(self, ngf: int = 32, n_res_enc: int = 2, n_res_dec: int = 1, text_dim: int = 384, heads: int = 4,
                 ff_mult: int = 4, act: str = "lrelu", norm: str = "none", output: str = "residual",
                 image_size: int = 256, text_encoder: str = "minilm", film: bool = False,
                 screen_periods: list[int] | None = None, screen_waves: list[list[float]] | None = None,
                 screen_size: int | None = None, screen_lattice: list[list[float]] | None = None,
                 colour_basis: int = 0, lens_basis: bool = False) -> None:
        super().__init__()
        _check_config(ngf, heads, act, norm, output, image_size)
        n_colour = len(colour_terms(colour_basis)) if colour_basis else 0
        c, act_fn = ngf, ACTIVATIONS[act]
        periods = list(screen_periods or [])
        if periods:  # not saved: rebuilt from the config
            self.register_buffer("screen", screen_phase(periods), persistent=False)
        for wave in screen_waves or []:
            if len(wave) != 2 or not all(abs(f) <= 0.5 for f in wave):
                raise ValueError(f"a screen wave is [fy, fx] in cycles per pixel, each within ±0.5, got {wave}")
        if screen_waves:  # not saved: rebuilt from the config
            weight, bias = wave_phase(screen_waves)
            self.register_buffer("wave_weight", weight, persistent=False)
            self.register_buffer("wave_bias", bias, persistent=False)
        if screen_lattice:  # not saved: rebuilt from the config
            if not screen_waves:
                raise ValueError("a screen lattice needs the screen waves it was fitted with")
            buffers = lattice_buffers(screen_lattice)
            for name, tensor in buffers.items():
                self.register_buffer(name, tensor, persistent=False)
            self.lattice_names = tuple(buffers)
        if screen_size is not None and screen_size < 1:
            raise ValueError(f"screen_size is the short side of the images the waves were fitted on, got {screen_size}")
        planes = 2 * len(screen_waves or []) + plane_count(screen_lattice)
        self.stem = Stem(c, act_fn, norm, extra_in=4 * len(periods), waves=planes)
        self.down1 = Down(c, 2 * c, act_fn, norm)
        n_res = n_res_enc + n_res_dec
        for i in range(1, n_res + 1):
            self.add_module(f"res{i}", ResBlock(2 * c, act_fn, norm))
        self.down2 = Down(2 * c, 4 * c, act_fn, norm)
        self.attn = SelfAttention(4 * c, heads)
        self.xattn = CrossAttention(4 * c, text_dim, heads)
        self.ff = FeedForward(4 * c, ff_mult, act_fn())
        self.up1 = Up(4 * c, 2 * c, act_fn, norm)
        self.up2 = Up(2 * c, c, act_fn, norm)
        self.head = Head(c, act_fn, norm, n_colour, lens_basis)
        if lens_basis:  # not saved: rebuilt from the config
            self.register_buffer("lens_shift", lens_shift(), persistent=False)
        if film:
            self.text_film = nn.ModuleDict({k: nn.Linear(text_dim, 2 * int(w * c)) for k, w in FILM_SITES.items()})
        self.enc_blocks = [f"res{i}" for i in range(1, n_res_enc + 1)]
        self.dec_blocks = [f"res{i}" for i in range(n_res_enc + 1, n_res + 1)]
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        slope = 0.2 if self.config.act == "lrelu" else 0.0
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=slope, nonlinearity="leaky_relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for name in self.enc_blocks + self.dec_blocks:
            getattr(self, name).conv2.weight.mul_(BRANCH_INIT_SCALE)
        for lin in (self.attn.out, self.xattn.out, self.ff.fc2):
            lin.weight.mul_(BRANCH_INIT_SCALE)
        nn.init.normal_(self.head.conv3.weight, std=HEAD_INIT_SCALE)
        if self.config.screen_waves:  # position starts unused: the network is translation-equivariant at init
            nn.init.zeros_(self.stem.waves.weight)
        if self.config.colour_basis:  # the colour basis starts unused
            nn.init.zeros_(self.head.colour.weight)
        if self.config.lens_basis:  # so does the lens basis
            nn.init.zeros_(self.head.lens.weight)
        if self.config.film:  # FiLM starts as the identity (scale 0, shift 0)
            for lin in self.text_film.values():
                nn.init.zeros_(lin.weight)

    def forward(self, x: torch.Tensor, text_tokens: torch.Tensor | None = None,
                text_mask: torch.Tensor | None = None, position: torch.Tensor | None = None,
                frame: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, 3, H, W] in [-1, 1] (H, W multiples of 16) -> edited image [B, 3, H, W].

        ``position`` [B or 1, 2, H, W]: the (row, col) of every pixel in the training pairs' pixel units, read
        only with ``screen_waves`` (default: the pixel grid; a tile passes its offset, a resized photo its scale).
        ``frame`` [B or 1, 2, H, W]: each pixel's place in the photo (``frame_grid``), read only with ``lens_basis``
        (default: ``x`` is the whole photo; a tile passes its part).
        """
        if not torch.jit.is_tracing():
            check_input(x, self.stride)
        film = self._film(x, text_tokens, text_mask)
        s1, s2, s4 = self.stem(self._with_screen(x), self._wave_planes(x, position))
        s4 = modulate(s4, film.get("s4"))  # encoder sites: on the block's output
        h = modulate(self.down1(s4), film.get("d1"))
        for name in self.enc_blocks:
            h = getattr(self, name)(h)
        s8 = h
        h = self.down2(h)
        t = to_tokens(h)  # [B, N, 4c]
        t = t + self.attn(t)
        t = t + self.xattn(t, text_tokens, text_mask)
        t = t + self.ff(t)
        h = from_tokens(t, h)
        h = self.up1(h, s8, film.get("u1"))
        for name in self.dec_blocks:
            h = getattr(self, name)(h)
        h = self.up2(h, s4, film.get("u2"))
        delta = self.head(h, s2, s1, film.get("h1"), film.get("h2"))
        if self.config.colour_basis:
            delta = delta + self.head.colour(colour_monomials(x, self.config.colour_basis))
        if self.config.lens_basis:
            delta = delta + self.head.lens(lens_planes(x, self.lens_shift, frame))
        if self.config.output == "tanh_residual":
            return torch.tanh(torch.atanh(x.clamp(-0.999, 0.999)) + delta)
        return soft_bound(x + delta)


    def _with_screen(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with the coordinate channels appended (``screen_periods``), else ``x``."""
        if not self.config.screen_periods:
            return x
        b, _, h, w = x.shape
        phase = self.screen.repeat(1, 1, h // STRIDE, w // STRIDE).expand(b, -1, -1, -1)
        return torch.cat([x, phase.to(x.dtype)], dim=1)

    def _wave_planes(self, x: torch.Tensor, position: torch.Tensor | None) -> torch.Tensor | None:
        """The screen waves' sin/cos planes at ``position`` (default: the pixel grid), or None without waves."""
        if not self.config.screen_waves:
            return None
        b, _, h, w = x.shape
        if position is None:
            position = pixel_grid(h, w, x)
        elif not torch.jit.is_tracing() and (position.shape[1:] != (2, h, w) or position.shape[0] not in (1, b)):
            raise ValueError(f"position must be [1 or {b}, 2, {h}, {w}] (row, col per pixel), got "
                             f"{list(position.shape)}")
        planes = wave_planes((self.wave_weight, self.wave_bias), position)  # batch 1 broadcasts in the stem's Add
        if not self.config.screen_lattice:
            return planes
        buffers = {name: getattr(self, name) for name in self.lattice_names}
        return torch.cat([planes, lattice_planes(buffers, position)], dim=1)

    def _film(self, x: torch.Tensor, text_tokens: torch.Tensor | None,
              text_mask: torch.Tensor | None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per-site (scale, shift) from the pooled text, each [B or 1, C]; {} without FiLM."""
        if not self.config.film:
            return {}
        pooled = pooled_text(text_tokens, text_mask, self.config.text_dim, x)
        return {k: tuple(lin(pooled).chunk(2, dim=1)) for k, lin in self.text_film.items()}


class _ExportUpsample2x(torch.autograd.Function):
    """Nearest x2, exported as Resize(x, roi=<empty constant>, scales=[1, 1, 2, 2]) (asymmetric, floor).

    torch's own export leaves the optional roi input as the empty name '', which onnxruntime's
    mobile usability checker counts as an input of unknown shape, splitting the NNAPI/CoreML
    partitions at every upsampling. Both EPs ignore roi, so an explicit empty tensor is equivalent.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest")

    @staticmethod
    def symbolic(g, x):
        roi = g.op("Constant", value_t=torch.zeros(0, dtype=torch.float32))
        scales = g.op("Constant", value_t=torch.tensor([1.0, 1.0, 2.0, 2.0], dtype=torch.float32))
        return g.op("Resize", x, roi, scales, coordinate_transformation_mode_s="asymmetric",
                    mode_s="nearest", nearest_mode_s="floor")


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour x2 upsampling (a mobile-friendly Resize node under ONNX export)."""
    if torch.onnx.is_in_onnx_export():
        return _ExportUpsample2x.apply(x)
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


class _ExportFlatten(torch.autograd.Function):
    """[B, C, H, W] -> [B, C, H*W] exported as Reshape(x, [0, C, -1]): no Shape node, static when x is."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2)

    @staticmethod
    def symbolic(g, x):
        channels = _static_sizes(x)[1]
        return g.op("Reshape", x, g.op("Constant", value_t=torch.tensor([0, channels, -1], dtype=torch.int64)))


class _ExportUnflatten(torch.autograd.Function):
    """[B, C, N] -> like's [B, C, H, W]; a constant target shape when H and W are static at export,
    otherwise Reshape(x, Shape(like)) for dynamic-size exports."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return x.reshape(like.shape)

    @staticmethod
    def symbolic(g, x, like):
        sizes = _static_sizes(like)
        if all(isinstance(s, int) for s in sizes[1:]):
            shape = g.op("Constant", value_t=torch.tensor([0, *sizes[1:3], -1], dtype=torch.int64))
        else:
            shape = g.op("Shape", like)
        return g.op("Reshape", x, shape)


def _static_sizes(value) -> list[int | None]:
    from torch.onnx import symbolic_helper

    return symbolic_helper._get_tensor_sizes(value)


def to_tokens(h: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> tokens [B, H*W, C]. Under ONNX export the reshape has a constant shape, so a
    fixed-size export is fully shape-static (mobile delegates reject nodes with dynamic shapes)."""
    flat = _ExportFlatten.apply(h) if torch.onnx.is_in_onnx_export() else h.flatten(2)
    return flat.transpose(1, 2)


def from_tokens(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Tokens [B, H*W, C] -> [B, C, H, W] shaped like ``like``."""
    t = t.transpose(1, 2)
    return _ExportUnflatten.apply(t, like) if torch.onnx.is_in_onnx_export() else t.reshape(like.shape)


def check_input(x: torch.Tensor, stride: int) -> None:
    """Raise a clear ValueError unless x is [B, 3, H, W] with H and W multiples of ``stride``."""
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected an image batch [B, 3, H, W], got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h % stride or w % stride:
        raise ValueError(
            f"image size {h}x{w} is not a multiple of the generator stride {stride}; "
            f"resize or crop to e.g. {max(stride, h // stride * stride)}x{max(stride, w // stride * stride)}")


def with_screen_waves(model: Generator, waves: list[list[float]], size: int | None = None,
                      lattice: list[list[float]] | None = None) -> Generator:
    """A copy of ``model`` that also reads the screen ``waves`` (fitted on images of short side ``size``), and the
    distance planes of its ``lattice`` (``base_gan.lattice``), through its stem's ``waves`` conv, which starts at
    zero (the copy edits exactly as ``model`` until trained); ``model`` itself when ``waves`` is empty."""
    if not waves:
        return model
    if model.config.screen_waves:
        raise ValueError(f"the generator already reads screen waves {model.config.screen_waves}")
    return _extended(model, {"screen_waves": [list(map(float, w)) for w in waves], "screen_size": size,
                             "screen_lattice": [list(map(float, w)) for w in lattice] if lattice else None},
                     "stem.waves.weight", "screen waves")


def with_colour_basis(model: Generator, degree: int) -> Generator:
    """A copy of ``model`` that also reads the colour basis of ``degree`` through ``head.colour``, which starts at
    zero (the copy edits exactly as ``model`` until trained or solved); ``model`` itself for degree 0 or when it
    already has that basis."""
    if not degree or model.config.colour_basis == degree:
        return model
    if model.config.colour_basis:
        raise ValueError(f"the generator already reads a colour basis of degree {model.config.colour_basis}")
    return _extended(model, {"colour_basis": int(degree)}, "head.colour.weight", "a colour basis")


def with_lens_basis(model: Generator, lens: bool = True) -> Generator:
    """A copy of ``model`` that also reads the lens basis through ``head.lens``, which starts at zero (the copy edits
    exactly as ``model`` until trained or solved); ``model`` itself for ``lens`` False or when it already has it."""
    if not lens or model.config.lens_basis:
        return model
    return _extended(model, {"lens_basis": True}, "head.lens.weight", "a lens basis")


def _extended(model: Generator, changes: dict, new_weight: str, what: str) -> Generator:
    """A copy of ``model`` with its config ``changes``, which add exactly the (zero-init) weight ``new_weight``."""
    config = {k: v for k, v in model.config.items() if not k.startswith("_")}
    with torch.random.fork_rng(devices=[]):  # its random init is overwritten: leave the global RNG alone
        copy = Generator(**{**config, **changes})
    missing, unexpected = copy.load_state_dict(model.state_dict(), strict=False)
    if missing != [new_weight] or unexpected:
        raise ValueError(f"cannot add {what} to this generator (missing {missing}, unexpected {unexpected})")
    param = next(model.parameters())
    if param.device != next(copy.parameters()).device or param.dtype != torch.float32:
        copy = copy.to(device=param.device, dtype=param.dtype)
    return copy.train(model.training)


def build_generator(seed: int = 0, **config) -> Generator:
    """A generator of ``config`` (Generator's arguments) with deterministic initial weights for ``seed``
    (the global RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Generator(**config)


def target_regex(groups: list[str] | tuple[str, ...]) -> str:
    """One regular expression for peft's string ``target_modules`` (re.fullmatch on module names)."""
    pats = [p for g in _check_groups(groups) for p in LAYER_GROUPS[g]]
    return r"(?:.*\.)?(?:" + "|".join(pats) + ")"


def target_modules(model: nn.Module, groups: list[str] | tuple[str, ...]) -> list[str]:
    """Exact names of the Conv2d/Linear modules of ``groups`` in ``model`` (peft's list form)."""
    rx = re.compile(target_regex(groups))
    return [name for name, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear)) and rx.fullmatch(name)]


def group_of(module_name: str) -> str | None:
    """The LAYER_GROUPS name a Conv2d/Linear module name belongs to (None if it is in none)."""
    for group, pats in LAYER_GROUPS.items():
        if any(re.fullmatch(r"(?:.*\.)?" + p, module_name) for p in pats):
            return group
    return None


def _check_groups(groups) -> list[str]:
    groups = list(groups)
    unknown = [g for g in groups if g not in LAYER_GROUPS]
    if unknown:
        raise ValueError(f"unknown layer group(s) {', '.join(unknown)} (known: {', '.join(LAYER_GROUPS)})")
    return groups
