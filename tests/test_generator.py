"""Base GAN networks: generator, pix2pix baseline, discriminator, losses, complexity counter, CLI info."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from base_gan.complexity import count_macs, count_params, measure
from base_gan.discriminator import build_discriminator
from base_gan.generator import LAYER_GROUPS, STRIDE, build_generator, group_of, target_modules, target_regex
from base_gan.losses import (
    LPIPSLoss,
    feature_matching_loss,
    gan_loss,
    l1_loss,
    lpips_available,
    lpips_backbone_path,
    make_lpips,
)
from base_gan.models import build_model, load_model, save_model
from base_gan.pix2pix import build_pix2pix
from factory.core.errors import FactoryError

SMALL = dict(ngf=16, text_dim=24, heads=2)


def images(b: int = 2, size: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, size, size, generator=g) * 2 - 1


def text(b: int = 2, length: int = 5, dim: int = 24, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, length, dtype=torch.bool)
    mask[0, -2:] = False
    return torch.randn(b, length, dim, generator=g), mask


def grad_norm(model: nn.Module, name: str) -> float:
    p = dict(model.named_parameters())[name]
    return 0.0 if p.grad is None else float(p.grad.abs().sum())


# -- generator ------------------------------------------------------------------------------------

@pytest.mark.parametrize("with_text", [True, False])
def test_forward_backward_reaches_every_stage(with_text):
    g = build_generator(**SMALL)
    x = images()
    tokens, mask = text() if with_text else (None, None)
    out = g(x, tokens, mask)
    assert out.shape == x.shape and torch.isfinite(out).all()
    (out - x.flip(-1)).abs().mean().backward()
    for name in ["stem.conv1.weight", "down1.conv.weight", "res1.conv1.weight", "down2.conv.weight",
                 "attn.q.weight", "attn.k.weight", "attn.v.weight", "attn.out.weight",
                 "xattn.v.weight", "xattn.out.weight", "ff.fc1.weight", "up1.conv.weight",
                 "res3.conv2.weight", "up2.conv.weight", "head.conv1.weight", "head.conv3.weight"]:
        assert grad_norm(g, name) > 0, name
    for p in g.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()
    # the text keys/queries are used exactly when there is text
    assert (grad_norm(g, "xattn.k.weight") > 0) == with_text
    assert (grad_norm(g, "xattn.q.weight") > 0) == with_text


@pytest.mark.parametrize("output", ["residual", "tanh_residual"])
def test_init_output_is_close_to_the_source(output):
    g = build_generator(ngf=16, text_dim=24, heads=2, output=output)
    x = images(4)
    x[0, :, :8, :8] = 1.0  # saturated pixels stay (almost) put too
    x[1, :, :8, :8] = -1.0
    with torch.no_grad():
        diff = (g(x, *text(4)) - x).abs()
    assert diff.mean() < 0.01 and diff.max() < 0.1, (diff.mean(), diff.max())
    assert diff.mean() > 0  # not a constant identity: the network is in the path


def test_output_bound_is_soft_and_keeps_gradients():
    from base_gan.generator import soft_bound

    y = torch.tensor([-3.0, -1.05, -0.5, 0.0, 0.99, 1.0, 1.05, 3.0], requires_grad=True)
    out = soft_bound(y)
    assert torch.equal(out[2:6], y[2:6])  # identity inside [-1, 1]
    assert out.abs().max() < 1.2 and (out[[1, 6]].abs() < 1.1).all()
    out.sum().backward()
    assert (y.grad >= 0.05).all()  # no hard clamp: gradient everywhere, even far out
    assert torch.allclose(y.grad[2:6], torch.ones(4))
    left = soft_bound(torch.tensor([1.0 - 1e-4, 1.0 + 1e-4]))
    assert float(left[1] - left[0]) == pytest.approx(2e-4, rel=1e-2)  # slope continuous at 1


def test_text_conditions_the_output_and_padding_is_ignored():
    g = build_generator(**SMALL)
    with torch.no_grad():  # make the text path strong enough to see
        g.xattn.out.weight.mul_(100)
        g.head.conv3.weight.mul_(100)
    x = images(2)
    tokens, mask = text(2)
    with torch.no_grad():
        base = g(x, tokens, mask)
        other = g(x, tokens.flip(0), mask.flip(0))
        notext = g(x)
        changed_pad = tokens.clone()
        changed_pad[0, -2:] = 99.0  # masked positions of sample 0
        padded = g(x, changed_pad, mask)
        shared = g(x, tokens[:1], mask[:1])  # one text for the whole batch
        expanded = g(x, tokens[:1].expand(2, -1, -1), mask[:1].expand(2, -1))
    assert (base - other).abs().max() > 1e-3
    assert (base - notext).abs().max() > 1e-3
    assert torch.allclose(base, padded, atol=1e-6)
    assert torch.allclose(shared, expanded, atol=1e-6)


def test_init_is_deterministic_per_seed_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = build_generator(seed=0, **SMALL).state_dict()
    after = torch.rand(3)
    b = build_generator(seed=0, **SMALL).state_dict()
    c = build_generator(seed=1, **SMALL).state_dict()
    assert torch.equal(before, after)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("h,w", [(64, 96), (16, 48)])
def test_any_multiple_of_the_stride_works(h, w):
    g = build_generator(**SMALL)
    with torch.no_grad():
        assert g(images(1, 16)[:, :, :1, :1].expand(1, 3, h, w).contiguous()).shape == (1, 3, h, w)


def test_sizes_off_the_stride_are_refused_clearly():
    g = build_generator(**SMALL)
    with pytest.raises(ValueError, match=rf"72x64 is not a multiple of the generator stride {STRIDE}"):
        g(torch.zeros(1, 3, 72, 64))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        g(torch.zeros(1, 1, 64, 64))
    with pytest.raises(ValueError, match="text_tokens must be"):
        g(torch.zeros(1, 3, 64, 64), torch.zeros(1, 4, 7))


def test_config_round_trip_and_refusals(tmp_path):
    g = build_generator(seed=4, ngf=24, heads=3, text_dim=512)
    save_model(g, tmp_path / "g", {"concepts": ["x"]})
    back = load_model(tmp_path / "g")
    assert type(back) is type(g) and {k: v for k, v in back.config.items() if not k.startswith("_")} == \
        {k: v for k, v in g.config.items() if not k.startswith("_")}
    assert all(torch.equal(a, b) for a, b in zip(g.state_dict().values(), back.state_dict().values()))
    assert isinstance(build_model("pix2pix", ngf=8), nn.Module)
    cfg = json.loads((tmp_path / "g" / "config.json").read_text())
    (tmp_path / "g" / "config.json").write_text(json.dumps({**cfg, "bogus": 1}))
    with pytest.raises(FactoryError, match=r"unknown Generator setting.*bogus"):
        load_model(tmp_path / "g")
    with pytest.raises(ValueError, match="not divisible by heads"):
        build_generator(ngf=16, heads=5)
    with pytest.raises(ValueError, match="output must be one of"):
        build_generator(output="clamp")
    with pytest.raises(FactoryError, match="unknown generator architecture"):
        build_model("unet")


def test_layer_groups_cover_every_layer_once_and_work_with_peft():
    from peft import LoraConfig, get_peft_model

    g = build_generator(**SMALL)
    layers = [n for n, m in g.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert all(group_of(n) is not None for n in layers), [n for n in layers if group_of(n) is None]
    by_group = {grp: target_modules(g, [grp]) for grp in LAYER_GROUPS}
    assert sorted(n for names in by_group.values() for n in names) == sorted(layers)
    assert by_group["attn"] == ["attn.q", "attn.k", "attn.v", "attn.out"]
    assert by_group["xattn"] == ["xattn.q", "xattn.k", "xattn.v", "xattn.out"]
    assert by_group["res"] == [f"res{i}.conv{j}" for i in (1, 2, 3) for j in (1, 2)]
    with pytest.raises(ValueError, match="unknown layer group"):
        target_modules(g, ["resblocks"])

    x = images(1)
    for targets in (target_modules(g, ["down1", "attn", "up2"]), target_regex(["down1", "attn", "up2"])):
        peft_model = get_peft_model(build_generator(**SMALL), LoraConfig(r=2, target_modules=targets))
        wrapped = sorted(n.removeprefix("base_model.model.").removesuffix(".lora_A")
                         for n, _ in peft_model.named_modules() if n.endswith(".lora_A"))
        assert wrapped == sorted(["down1.conv", "attn.q", "attn.k", "attn.v", "attn.out", "up2.conv"])
        with torch.no_grad():  # LoRA B starts at zero: same outputs as the base
            assert torch.allclose(peft_model(x), g(x), atol=1e-6)


def test_default_generator_fits_the_mobile_budget_at_256():
    g = build_generator()
    report = measure(g, 256, text_len=16, text_dim=g.config.text_dim)
    assert report.params <= 2.5e6, report.params
    assert report.macs <= 3e9, report.macs
    assert report.params == count_params(build_generator())
    assert set(report.macs_by_group) >= {"stem", "down1", "res1", "attn", "xattn", "ff", "up1", "up2", "head"}
    assert sum(report.macs_by_group.values()) == report.macs
    assert sum(report.params_by_group.values()) == report.params


# -- pix2pix baseline and the counter ---------------------------------------------------------------

def test_pix2pix_resnet9_matches_the_published_size():
    model = build_pix2pix()
    real = measure(model, 256)
    published = measure(model, 256, transposed_conv="output")
    assert abs(real.params - 11.4e6) / 11.4e6 < 0.01, real.params
    assert abs(published.macs - 56.8e9) / 56.8e9 < 0.01, published.macs
    # the real work of the two stride-2 transposed convs is 1/4 of the zero-inserted count
    assert published.macs - real.macs == 3 * (real.macs_by_group["up1"] + real.macs_by_group["up2"])
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in build_generator().modules())
    with torch.no_grad():
        out = build_pix2pix(ngf=8, n_blocks=2)(images(1, 32), None)
    assert out.shape == (1, 3, 32, 32) and out.abs().max() <= 1


def test_counter_matches_hand_counts():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    total, _ = count_macs(conv, (torch.zeros(2, 3, 10, 10),))
    assert total == 2 * 10 * 10 * 8 * 3 * 9
    lin = nn.Linear(4, 5)
    assert count_macs(lin, (torch.zeros(6, 4),))[0] == 6 * 4 * 5
    net = nn.Sequential()
    net.add_module("up", nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1))
    x = torch.zeros(1, 4, 5, 5)
    assert count_macs(net, (x,))[0] == 5 * 5 * 4 * 2 * 9
    total, by_group = count_macs(net, (x,), transposed_conv="output")
    assert total == by_group["up"] == 10 * 10 * 4 * 2 * 9
    assert count_params(conv) == 3 * 8 * 9 + 8


def test_base_info_cli_prints_groups_and_totals():
    from click.testing import CliRunner

    from factory.cli import cli

    res = CliRunner().invoke(cli, ["base", "info", "--size", "128", "--ngf", "16"])
    assert res.exit_code == 0, res.output
    report = measure(build_generator(ngf=16), 128, text_len=16, text_dim=384)
    for group in ("stem", "res3", "attn", "xattn", "ff", "head", "total"):
        assert re.search(rf"^{group}\s+[\d,]+\s+\d+\.\d{{3}}$", res.output, re.M), group
    assert f"{report.params:,d}" in res.output and f"{report.gmacs:.3f} GMACs" in res.output
    bad = CliRunner().invoke(cli, ["base", "info", "--size", "100"])
    assert bad.exit_code != 0 and "multiple of the generator stride" in str(bad.exception)


# -- discriminator and losses ---------------------------------------------------------------------

@pytest.mark.parametrize("cfg", [dict(nf=8), dict(nf=8, norm="none", spectral_norm=True)])
def test_patch_discriminator_shapes(cfg):
    d = build_discriminator(**cfg)
    logits, feats = d(images(2), images(2, seed=3))
    assert logits.shape == (2, 1, 6, 6)  # 64 -> 32 -> 16 -> 8 -> 7 -> 6
    assert [f.shape[1] for f in feats] == [8, 16, 32, 64]
    assert build_discriminator().blocks[0][0].weight.shape == (64, 6, 4, 4)


@pytest.mark.parametrize("kind", ["lsgan", "hinge"])
def test_gan_losses_have_the_right_sign_and_train_a_discriminator(kind):
    loss = gan_loss(kind)
    hi, lo = torch.full((2, 1, 4, 4), 2.0), torch.full((2, 1, 4, 4), -2.0)
    assert loss.d_loss(hi, lo) < loss.d_loss(lo, hi)
    assert loss.g_loss(hi) < loss.g_loss(lo)

    d = build_discriminator(nf=8, norm="none")
    opt = torch.optim.Adam(d.parameters(), 2e-3, betas=(0.5, 0.999))
    src, real, fake = images(4), images(4, seed=5).clamp(0, 1), images(4, seed=6).clamp(-1, 0)
    losses = []
    for _ in range(15):
        value = loss.d_loss(d(src, real)[0], d(src, fake)[0])
        opt.zero_grad()
        value.backward()
        opt.step()
        losses.append(value.item())
    assert losses[-1] < 0.5 * losses[0]
    with torch.no_grad():
        assert d(src, real)[0].mean() > d(src, fake)[0].mean()
    with pytest.raises(ValueError, match="unknown GAN loss"):
        gan_loss("wgan")


def test_l1_and_feature_matching():
    a, b = images(2), images(2, seed=9)
    assert torch.isclose(l1_loss(a, b), 100 * (a - b).abs().mean())
    assert torch.isclose(l1_loss(a, b, weight=1.0), (a - b).abs().mean())
    real = [torch.randn(2, 4, 8, 8, requires_grad=True), torch.randn(2, 8, 4, 4, requires_grad=True)]
    fake = [r.detach().clone().requires_grad_(True) for r in real]
    assert feature_matching_loss(real, fake) == 0
    fake2 = [f.detach() + 1.0 for f in fake]
    fake2 = [f.requires_grad_(True) for f in fake2]
    value = feature_matching_loss(real, fake2)
    assert torch.isclose(value, torch.tensor(1.0))
    value.backward()
    assert real[0].grad is None and fake2[0].grad is not None


def test_lpips_is_unavailable_without_cached_weights_and_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_download(*a, **k):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    ok, why = lpips_available("alex")
    assert not ok and str(lpips_backbone_path("alex")) in why and "not in the torch hub cache" in why
    assert lpips_backbone_path("alex").name.startswith("alexnet-")
    with pytest.raises(FactoryError, match="LPIPS unavailable"):
        LPIPSLoss("alex")
    assert make_lpips("alex")[0] is None


def test_lpips_loads_a_cached_backbone_offline(tmp_path, monkeypatch):
    from torchvision.models import squeezenet1_1

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = lpips_backbone_path("squeeze")
    path.parent.mkdir(parents=True)
    torch.save(squeezenet1_1(weights=None).state_dict(), path)  # stand-in file at the cached location
    assert lpips_available("squeeze") == (True, str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric, _ = make_lpips("squeeze")
    a = images(1, 64)
    assert float(metric(a, a)) == pytest.approx(0.0, abs=1e-6)
    assert float(metric(a, images(1, 64, seed=4))) > 0


# -- ONNX export ----------------------------------------------------------------------------------

def _export(model: nn.Module, args: tuple, names: list[str], path, dynamic: dict | None = None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), input_names=names, output_names=["edited"],
                          opset_version=17, dynamo=False, dynamic_axes=dynamic)


def test_onnx_export_with_text_input_matches_torch(tmp_path):
    import onnxruntime as ort

    g = build_generator(**SMALL).eval()
    x, (tokens, mask) = images(2), text(2)
    path = tmp_path / "g.onnx"
    dyn = {"image": {0: "b", 2: "h", 3: "w"}, "text_tokens": {0: "b", 1: "L"}, "text_mask": {0: "b", 1: "L"},
           "edited": {0: "b", 2: "h", 3: "w"}}
    _export(g, (x, tokens, mask), ["image", "text_tokens", "text_mask"], path, dyn)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for xx, tt, mm in [(x, tokens, mask), (images(1, 32, seed=7), tokens[1:, :3], mask[1:, :3])]:
        got = sess.run(None, {"image": xx.numpy(), "text_tokens": tt.numpy(), "text_mask": mm.numpy()})[0]
        with torch.no_grad():
            want = g(xx, tt, mm).numpy()
        assert got.shape == want.shape
        assert np.abs(got - want).max() < 1e-4


def test_onnx_export_without_text_is_whole_on_mobile_delegates(tmp_path):
    import onnx
    import onnxruntime as ort
    from onnxruntime.tools.mobile_helpers import usability_checker as uc
    from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo, optimize_model

    g = build_generator(**SMALL).eval()
    x = images(1)
    path = tmp_path / "g.onnx"
    _export(g, (x,), ["image"], path)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert not ops & {"InstanceNormalization", "ConvTranspose", "Pad", "Where", "Expand", "Shape",
                      "LayerNormalization", "Erf"}, ops
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        assert np.abs(got - g(x).numpy()).max() < 1e-4

    optimized = tmp_path / "g.opt.onnx"
    optimize_model(path, optimized)  # basic level, as the checker and the .ort conversion do
    model = ModelProtoWithShapeInfo(optimized).model_with_shape_info
    for info in (uc.check_nnapi_partitions(model, True),
                 uc.check_coreml_partitions(model, True, "coreml_supported_mlprogram_ops.md")):
        assert info.num_partitions == 1 and info.num_supported_nodes == info.num_nodes, info.unsupported_ops


def test_film_starts_as_the_identity_and_then_lets_the_text_steer(tmp_path):
    import onnxruntime as ort

    g = build_generator(**SMALL, film=True)
    x, (tokens, mask) = images(2), text(2)
    with torch.no_grad():
        film = g._film(x, tokens, mask)
        assert set(film) == {"s4", "d1", "u1", "u2", "h1", "h2"}
        assert all(torch.equal(t, torch.zeros_like(t)) for pair in film.values() for t in pair)
        g.xattn.out.weight.zero_()  # the text now reaches the image through FiLM alone
        g.xattn.out.bias.zero_()
        g.head.conv3.weight.mul_(100)
        assert torch.allclose(g(x, tokens, mask), g(x, tokens.flip(0), mask.flip(0)), atol=1e-6)
        for lin in g.text_film.values():
            nn.init.normal_(lin.weight, std=0.5)
        steered, other = g(x, tokens, mask), g(x, tokens.flip(0), mask.flip(0))
    assert (steered - other).abs().max() > 1e-3
    g(x, tokens, mask).abs().mean().backward()
    assert grad_norm(g, "text_film.h2.weight") > 0 and grad_norm(g, "text_film.s4.weight") > 0

    path = tmp_path / "film.onnx"
    dyn = {"image": {0: "b", 2: "h", 3: "w"}, "text_tokens": {0: "b", 1: "L"}, "text_mask": {0: "b", 1: "L"},
           "edited": {0: "b", 2: "h", 3: "w"}}
    _export(g.eval(), (x, tokens, mask), ["image", "text_tokens", "text_mask"], path, dyn)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"image": x.numpy(), "text_tokens": tokens.numpy(), "text_mask": mask.numpy()})[0]
    assert np.abs(got - steered.numpy()).max() < 1e-4


def test_coordinate_channels_place_a_pattern_and_export_with_parity(tmp_path):
    """``screen_periods``: 12 phase channels enter the stem and the output depends on their phase (the same
    photo with the screen moved by 4 rows edits differently); they survive save/load; ONNX matches torch."""
    from base_gan.generator import build_generator
    from base_gan.models import load_model, save_model
    from factory.export.onnx_export import EditorModule, export_onnx, torch_vs_onnx

    torch.manual_seed(0)
    flat = torch.full((1, 3, 64, 64), 0.3)
    plain = build_generator(seed=0, ngf=8, heads=2)
    coords = build_generator(seed=0, ngf=8, heads=2, screen_periods=[4, 8, 16])
    assert plain.stem.conv1.in_channels == 3 and coords.stem.conv1.in_channels == 3 + 12
    with torch.no_grad():
        coords.head.conv3.weight.mul_(100.0)  # make the edit visible
        before = coords(flat)
        coords.screen.copy_(coords.screen.roll(4, dims=2))
        moved = coords(flat)
        coords.screen.copy_(coords.screen.roll(-4, dims=2))
        assert (before - moved).abs().max() > 1e-3
    save_model(coords, tmp_path / "g", {})
    again = load_model(tmp_path / "g")
    assert again.config.screen_periods == [4, 8, 16]
    with torch.no_grad():
        assert torch.allclose(again(flat), coords(flat), atol=1e-5)
    module = EditorModule(coords).eval()
    path = export_onnx(module, tmp_path / "e.onnx", 64)
    x = [np.random.default_rng(0).uniform(-1, 1, (2, 3, 32, 48)).astype(np.float32),
         np.random.default_rng(1).uniform(-1, 1, (1, 3, 64, 64)).astype(np.float32)]
    assert torch_vs_onnx(module, path, x).max_abs < 1e-3
    with pytest.raises(ValueError, match="screen periods"):
        build_generator(seed=0, ngf=8, heads=2, screen_periods=[5])


def test_screen_waves_let_a_tiny_generator_place_an_anchored_screen_it_cannot_place_without(tmp_path):
    """``screen_waves``: sin/cos of plane waves reach the stem's ``waves`` conv; with the waves of a 45-degree screen
    a tiny generator learns that screen on photos it never saw, without them it cannot place it; the phase follows
    the ``position`` input (a tile's offset); the waves survive save/load."""
    from base_gan.generator import build_generator, pixel_grid, wave_phase, wave_planes

    waves = [[0.1414, 0.1414], [-0.1414, 0.1414]]
    planes = wave_planes(wave_phase(waves), pixel_grid(4, 5, torch.zeros(1)))
    assert planes.shape == (1, 4, 4, 5)
    assert abs(float(planes[0, 0, 3, 2]) - np.sin(2 * np.pi * (0.1414 * 3 + 0.1414 * 2))) < 1e-5
    assert abs(float(planes[0, 3, 1, 4]) - np.cos(2 * np.pi * (-0.1414 * 1 + 0.1414 * 4))) < 1e-5

    def batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        photo = torch.nn.functional.interpolate(torch.rand(8, 3, 8, 8, generator=g), size=64, mode="bilinear")
        screen = wave_planes(wave_phase(waves), pixel_grid(64, 64, photo))
        dots = 0.4 * (screen[:, 2:3] + screen[:, 3:4])  # cos + cos: a 45-degree dot lattice
        return photo * 2 - 1, (photo * 2 - 1 + dots).clamp(-1, 1)

    def train(screen_waves: list | None) -> nn.Module:
        model = build_generator(seed=0, ngf=8, heads=2, screen_waves=screen_waves)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for step in range(120):
            x, y = batch(step)
            loss = (model(x) - y).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return model.eval()

    x, y = batch(10_000)
    screened, plain = train(waves), train(None)
    with torch.no_grad():
        with_waves, without = float((screened(x) - y).abs().mean()), float((plain(x) - y).abs().mean())
        identity = float((x - y).abs().mean())
        assert with_waves < 0.6 * without and with_waves < 0.15 * identity, (with_waves, without, identity)
        # a tile cut at (16, 32) edits like the same region of the whole image when it passes its offset
        whole = screened(x[:1])
        tile = x[:1, :, 16:48, 32:64]
        offset = pixel_grid(32, 32, tile) + torch.tensor([16.0, 32.0]).reshape(1, 2, 1, 1)
        inner = (slice(None), slice(None), slice(8, 24), slice(8, 24))
        assert (screened(tile, position=offset) - whole[:, :, 16:48, 32:64])[inner].abs().max() < 0.05
        assert (screened(tile) - whole[:, :, 16:48, 32:64])[inner].abs().mean() > 0.1

    assert screened.stem.conv1.in_channels == 3 and screened.stem.waves.in_channels == 4
    save_model(screened, tmp_path / "g", {})
    again = load_model(tmp_path / "g")
    assert again.config.screen_waves == waves
    with torch.no_grad():
        assert torch.allclose(again(x[:1]), screened(x[:1]), atol=1e-6)
    with pytest.raises(ValueError, match="screen wave"):
        build_generator(seed=0, ngf=8, heads=2, screen_waves=[[0.7, 0.0]])
    with pytest.raises(ValueError, match="position must be"):
        screened(x[:1], position=torch.zeros(1, 2, 8, 8))


def test_a_lattice_reaches_the_stem_survives_save_load_and_starts_unused(tmp_path):
    """``screen_lattice``: its distance planes are inputs of the stem's ``waves`` conv (8 more for two waves) and move
    the output once that conv is non-zero; the lattice survives save/load; a generator given it by
    ``with_screen_waves`` edits exactly as before (zero conv); a lattice needs waves and frequencies within +-0.5."""
    from base_gan.generator import build_generator, pixel_grid, with_screen_waves

    a = 1 / 16 / np.sqrt(2)
    waves, lattice = [[a, a], [a, -a]], [[a, a, 0.0], [a, -a, 0.25]]
    model = build_generator(seed=0, ngf=8, heads=2, screen_waves=waves, screen_lattice=lattice).eval()
    assert model.stem.waves.in_channels == 4 + 8
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        model.stem.waves.weight.normal_(0, 0.5)
        before = model(x)
        model.stem.waves.weight[:, 4:] = 0  # the lattice's planes unread
        assert (model(x) - before).abs().max() > 0.01
        model.stem.waves.weight.normal_(0, 0.5)
    save_model(model, tmp_path / "g", {})
    again = load_model(tmp_path / "g")
    assert again.config.screen_lattice == lattice
    with torch.no_grad():
        assert torch.allclose(again(x), model(x), atol=1e-6)
        shifted = pixel_grid(64, 64, x) + 8.0  # the planes follow the position input
        assert (model(x, position=shifted) - model(x)).abs().max() > 0.01
    plain = build_generator(seed=3, ngf=8, heads=2).eval()
    copy = with_screen_waves(plain, waves, 64, lattice).eval()
    with torch.no_grad():
        assert torch.equal(copy(x), plain(x))
    assert copy.config.screen_lattice == lattice
    with pytest.raises(ValueError, match="needs the screen waves"):
        build_generator(seed=0, ngf=8, heads=2, screen_lattice=lattice)
    with pytest.raises(ValueError, match="lattice wave"):
        build_generator(seed=0, ngf=8, heads=2, screen_waves=waves, screen_lattice=[[0.7, 0.0, 0.0]])


def test_screen_waves_added_to_a_trained_generator_start_as_that_generator():
    """``with_screen_waves``: the copy edits exactly as the original until its zero ``waves`` conv trains."""
    from base_gan.generator import build_generator, with_screen_waves

    model = build_generator(seed=3, ngf=8, heads=2).eval()
    copy = with_screen_waves(model, [[0.2, 0.0]]).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(copy(x), model(x))
    assert with_screen_waves(model, []) is model
    with pytest.raises(ValueError, match="already reads"):
        with_screen_waves(copy, [[0.1, 0.1]])
