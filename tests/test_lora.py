"""Per-concept LoRA: only adapter weights train, peft loads what we save, merge is exact, searches run,
pair selection, and `factory finetune` / `factory lora probe` end to end on a tiny base."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file

from base_gan.models import BaseGAN, load_model, model_spec, read_training
from base_gan.train import Trainer, TrainSettings
from concepts.cards import find_card
from factory.cli import cli
from factory.core.configs import to_dict
from factory.core.errors import FactoryError
from factory.core.images import read_image
from factory.core.workspace import Workspace
from factory.data.card_pairs import make_pairs
from factory.evaluation.curves import read_curve
from factory.evaluation.heldout import HeldOutPairs
from factory.lora.adapters import (
    LoraLayout,
    count_adapter_params,
    layout_of_adapter,
    lora_parameters,
    merge,
    save_adapter,
    wrap,
)
from factory.lora.options import FinetuneOptions
from factory.lora.pair_selection import cluster_select, select_pairs, train_ids, validation_split
from factory.lora.rank_search import search_ranks
from factory.text.encoder import TextEncoder

TINY = {"arch": "e2gan", "ngf": 8, "heads": 2, "image_size": 32}
E2GAN_SET = ["down1", "down2", "attn", "xattn", "ff", "up1", "up2"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is faster, and far faster when the cores are busy (2 OpenMP
    threads spinning against other processes made each 32 px probe run ~30x slower here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ws(tmp_path_factory, one_thread) -> Workspace:
    """Data for two base concepts and one held-out concept, and a tiny base trained a few steps."""
    ws = Workspace(tmp_path_factory.mktemp("lora-ws"))
    for name in ("sepia", "negative", "autumn"):
        make_pairs(ws, find_card(name), 27, 32, seed=0)
    settings = TrainSettings(generator=TINY, disc_nf=8, batch=4, steps=6, checkpoint_every=100, lr=1e-3)
    trainer = Trainer(ws.base("tiny"), [ws.data("sepia"), ws.data("negative")], settings, text_cache=ws.text_cache)
    trainer.train()
    trainer.save_final({"concepts": ["sepia", "negative"], "instructions": trainer.data.instructions})
    return ws


def text_for(ws: Workspace, concept: str) -> tuple[torch.Tensor, torch.Tensor]:
    return TextEncoder.from_name("minilm", cache_dir=ws.text_cache).tokens([find_card(concept).instruction])


def images(n: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def adapted(ws: Workspace, layout: LoraLayout, steps: int = 4, seed: int = 0):
    """A LoRA on the tiny base trained ``steps`` steps on 'autumn' (lr high so weights move visibly)."""
    base = load_model(ws.base("tiny"))
    model = wrap(base, layout, seed=seed)
    settings = TrainSettings(generator=model_spec(base), disc_nf=8, batch=4, steps=steps, lr=5e-3,
                             checkpoint_every=10**6)
    trainer = Trainer(ws.root / "tmp-run", [ws.data("autumn")], settings, ws.text_cache, generator=model,
                      trainable=lora_parameters(model))
    trainer.train()
    return model.eval()


def invoke(ws: Workspace, *args: str):
    result = CliRunner().invoke(cli, ["--workspace", str(ws.root), *args], catch_exceptions=True)
    return result


# -- peft mechanics ---------------------------------------------------------------------------------
def test_step0_equals_base_and_only_adapter_weights_train(ws: Workspace) -> None:
    base = load_model(ws.base("tiny"))
    before = {k: v.clone() for k, v in base.state_dict().items()}
    x, (tok, mask) = images(), text_for(ws, "autumn")
    with torch.no_grad():
        y_base = base(x, tok.expand(2, -1, -1), mask.expand(2, -1))

    model = wrap(base, LoraLayout(E2GAN_SET, rank=2, bias=True))  # lora_B biases are the adapter's own
    with torch.no_grad():
        # B = 0 at init: the base's output, up to float rounding (on some CPUs, e.g. with AVX-512, the wrapped
        # layers' convolutions round 1 ulp differently)
        torch.testing.assert_close(model(x, tok.expand(2, -1, -1), mask.expand(2, -1)), y_base, rtol=0, atol=1e-6)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    settings = TrainSettings(generator=TINY, disc_nf=8, batch=4, steps=3, lr=5e-3, checkpoint_every=10**6)
    trainer = Trainer(ws.root / "run-frozen", [ws.data("autumn")], settings, ws.text_cache, generator=model,
                      trainable=lora_parameters(model))
    trainer.train()
    # every base tensor is bit-identical (peft keeps them as <module>.base_layer.* or in place)
    after = model.get_base_model().state_dict()
    for k, v in before.items():
        parts = k.rsplit(".", 1)
        key = k if k in after else f"{parts[0]}.base_layer.{parts[1]}"
        assert torch.equal(after[key], v), k
    moved = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, lora_before[n])]
    assert any("lora_B" in n for n in moved)
    with torch.no_grad():
        assert not torch.allclose(model.eval()(x, tok.expand(2, -1, -1), mask.expand(2, -1)), y_base, atol=1e-4)
    # checkpoints hold the adapter weights only
    ckpt = load_file(next((ws.root / "run-frozen" / "checkpoints").glob("step-*")) / "generator.safetensors")
    assert set(ckpt) == trainable


def test_saved_adapter_loads_with_plain_peft_and_merges(ws: Workspace, tmp_path: Path) -> None:
    model = adapted(ws, LoraLayout(E2GAN_SET, rank=4, ranks={"attn": 2, "up2": 1}, bias=True))
    x, (tok, mask) = images(3), text_for(ws, "autumn")
    args = (x, tok.expand(3, -1, -1), mask.expand(3, -1))
    with torch.no_grad():
        expected = model(*args)
    save_adapter(model, tmp_path / "a")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]

    # 1. PeftModel.from_pretrained onto a freshly loaded base
    fresh = load_model(ws.base("tiny"))
    loaded = PeftModel.from_pretrained(fresh, str(tmp_path / "a")).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(*args), expected, rtol=0, atol=1e-6)

    # 2. LoraConfig.from_pretrained + get_peft_model + set_peft_model_state_dict
    fresh = load_model(ws.base("tiny"))
    again = get_peft_model(fresh, LoraConfig.from_pretrained(str(tmp_path / "a")))
    result = set_peft_model_state_dict(again, load_file(tmp_path / "a" / "adapter_model.safetensors"))
    assert not result.unexpected_keys
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(*args), expected, rtol=0, atol=1e-6)

    # rank_pattern is honoured per group and the layout reads back
    cfg = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert cfg["rank_pattern"]["attn.q"] == 2 and cfg["rank_pattern"]["up2.conv"] == 1
    assert cfg["rank_pattern"]["ff.fc1"] == 4
    sd = load_file(tmp_path / "a" / "adapter_model.safetensors")
    assert next(v for k, v in sd.items() if "attn.q.lora_A" in k and "xattn" not in k).shape[0] == 2
    assert to_dict(layout_of_adapter(tmp_path / "a")) == {"groups": E2GAN_SET, "bias": True, "ranks": {
        **dict.fromkeys(E2GAN_SET, 4), "attn": 2, "up2": 1}}
    assert any(k.endswith("lora_B.bias") for k in sd) and cfg["lora_bias"] is True

    # merge_and_unload gives a plain generator with the same outputs (lora_B biases fold into the base biases)
    merged = merge(model)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(merged(*args), expected, rtol=0, atol=1e-5)


def test_same_options_give_the_same_layout(ws: Workspace, tmp_path: Path) -> None:
    layout = LoraLayout(["down2", "attn", "up1"], rank=2)
    shapes = []
    for i, seed in enumerate((0, 1)):
        model = wrap(load_model(ws.base("tiny")), layout, seed=seed)
        save_adapter(model, tmp_path / str(i))
        sd = load_file(tmp_path / str(i) / "adapter_model.safetensors")
        shapes.append({k: tuple(v.shape) for k, v in sd.items()})
        assert count_adapter_params(model) == sum(v.numel() for v in sd.values())
    assert shapes[0] == shapes[1]
    cfgs = [json.loads((tmp_path / str(i) / "adapter_config.json").read_text()) for i in (0, 1)]
    assert sorted(cfgs[0]["target_modules"]) == sorted(cfgs[1]["target_modules"])
    assert cfgs[0]["rank_pattern"] == cfgs[1]["rank_pattern"]
    with pytest.raises(FactoryError, match="unknown layer group"):
        LoraLayout(["down2", "resblocks"])


# -- pairs ------------------------------------------------------------------------------------------
def test_pairs_k_distinct_cluster_and_random(ws: Workspace) -> None:
    d = ws.data("autumn")
    available = train_ids(d)
    base = load_model(ws.base("tiny"))
    for method in ("cluster", "random"):
        picked = select_pairs(d, 5, method, base, seed=0)
        assert len(picked) == 5 == len(set(picked)) and set(picked) <= set(available)
    assert select_pairs(d, 5, "random", seed=0) != select_pairs(d, 5, "random", seed=1)
    assert select_pairs(d, len(available), "cluster", base) == available
    with pytest.raises(FactoryError, match="--pairs"):
        select_pairs(d, len(available) + 1, "cluster", base)


def test_cluster_select_takes_one_pair_per_cluster() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=float)
    feats = np.concatenate([c + 0.1 * rng.standard_normal((6, 2)) for c in centres])
    ids = [f"{i:05d}" for i in range(len(feats))]
    picked = cluster_select(feats, ids, 4, seed=0)
    assert sorted({int(p) // 6 for p in picked}) == [0, 1, 2, 3]


def test_validation_split_holds_out_whole_train_photos(ws: Workspace) -> None:
    d = ws.data("autumn")
    fit, val = validation_split(d)
    assert val and fit and not set(fit) & set(val) and sorted(fit + val) == train_ids(d)
    records = {r["id"]: r for r in map(json.loads, (d / "manifest.jsonl").read_text().splitlines())}
    photos_val = {records[i]["photo"] for i in val}
    assert not photos_val & {records[i]["photo"] for i in fit}
    assert all(records[i]["split"] == "train" for i in val)
    assert len(HeldOutPairs(d, split="train", ids=val)) == len(val)


# -- rank search logic ------------------------------------------------------------------------------
def test_rank_search_keeps_the_smallest_within_tolerance() -> None:
    psnr = {1: 20.0, 2: 21.3, 4: 21.5, 8: 21.45, 16: 21.2}
    r = search_ranks(lambda lay: {"psnr": psnr[lay.max_rank]}, ["attn", "up1"], tolerance=0.2)
    assert r["ranks"] == {"attn": 2, "up1": 2} and len(r["table"]) == 5
    r = search_ranks(lambda lay: {"psnr": psnr[lay.max_rank]}, ["attn"], tolerance=0.1)
    assert r["ranks"] == {"attn": 4}

    def per_group(lay: LoraLayout) -> dict:  # attn needs rank 8, up1 is happy with 1
        return {"psnr": min(lay.rank_of("attn"), 8) * 1.0 + 0.01 * lay.rank_of("up1")}

    r = search_ranks(per_group, ["attn", "up1"], candidates=(1, 2, 8), tolerance=0.2, mode="group")
    assert r["global_choice"] == 8 and r["ranks"] == {"attn": 8, "up1": 1}


def test_rank_search_respects_a_size_budget(ws: Workspace) -> None:
    from factory.lora.plan import size_budget

    fits = size_budget(BaseGAN.load(ws.base("tiny")), 0.05)
    assert fits(LoraLayout(["down1"], rank=1)) and not fits(LoraLayout(E2GAN_SET, rank=16))
    scored = []
    r = search_ranks(lambda lay: scored.append(lay.max_rank) or {"psnr": float(lay.max_rank)}, ["attn", "ff"],
                     candidates=(1, 2, 4, 8, 16), tolerance=0.2, fits=fits)
    assert scored and max(scored) < 16 and r["ranks"]["attn"] == max(scored)
    assert [row["rank"] for row in r["table"] if row.get("over_budget")] == [k for k in (1, 2, 4, 8, 16)
                                                                            if k not in scored]
    r = search_ranks(lambda lay: {"psnr": 1.0}, E2GAN_SET, candidates=(16, 32), fits=fits)
    assert r["ranks"]["attn"] == 16 and "no candidate fits" in r["budget_note"]


# -- end to end -------------------------------------------------------------------------------------
def test_probe_then_finetune_auto(ws: Workspace) -> None:
    res = invoke(ws, "lora", "probe", "autumn", "sepia", "--base", "tiny", "--groups", "down1,attn,head",
                 "--steps", "2", "--batch", "2")
    assert res.exit_code == 0, res.output
    probe_dir = ws.lora("_probe") / "tiny"
    probe = json.loads((probe_dir / "probe.json").read_text())
    assert [r["group"] for r in probe["ranking"]] and len(probe["ranking"]) == 3
    gains = [r["mean_gain_db"] for r in probe["ranking"]]
    assert gains == sorted(gains, reverse=True)
    assert probe["chosen"] == [r["group"] for r in probe["ranking"]][: len(probe["chosen"])]
    assert set(probe["zero_shot_psnr"]) == {"autumn", "sepia"} and "90%" in probe["rule"]
    assert probe["e2gan"]["groups"] == ["down1", "attn"] and probe["e2gan"]["gain_db"] is not None
    md = (probe_dir / "probe.md").read_text()
    assert "| 1 |" in md and "Chosen" in md and "chosen" in res.output

    res = invoke(ws, "finetune", "autumn", "--base", "tiny", "--layers", "auto", "--rank", "auto",
                 "--rank-candidates", "1,2", "--search-steps", "2", "--steps", "4", "--eval-every", "2",
                 "--batch", "2", "--pairs", "6")
    assert res.exit_code == 0, res.output
    out = ws.lora("autumn")
    m = json.loads((out / "metrics.json").read_text())
    assert m["layers"]["groups"] == probe["chosen"] and "probe table" in m["layers"]["source"]
    assert [row["rank"] for row in m["rank"]["table"]] == [1, 2] and m["rank"]["rule"].startswith("smallest")
    assert set(m["layout"]["ranks"].values()) <= {1, 2}
    assert len(m["pairs"]["train"]) == 6 == len(set(m["pairs"]["train"])) and m["pairs"]["method"] == "cluster"
    assert not set(m["pairs"]["validation"]) & set(HeldOutPairs(ws.data("autumn"), "test").ids)
    assert m["training"]["steps"] == 4 and 0 < m["adapter_fraction"] < 1
    curve = read_curve(out / "curve.csv")
    # step 0 is the base (before the output curves; the curve charges their fit to each point)
    assert [r["step"] for r in curve] == [0, 2, 4] and curve[0]["seconds"] == curve[0]["curves_seconds"] > 0
    assert abs(curve[0]["raw_psnr"] - m["test"]["base_zero_shot"]["psnr"]) < 1e-4
    assert read_image(out / "curve.png").shape[2] == 3
    assert "finetune autumn: LoRA" in res.output and str(out) in res.output
    # the adapter loads with plain peft onto the base given its colour and lens bases' convs, and reproduces the
    # final test PSNR; onto the bare base it does not (peft skips a modules_to_save module the model lacks)
    from base_gan.generator import with_colour_basis, with_lens_basis
    from factory.lora.adapters import saved_colour_basis, saved_lens_basis

    assert saved_colour_basis(out) == 3 and saved_lens_basis(out)
    fresh = with_lens_basis(with_colour_basis(load_model(ws.base("tiny")), saved_colour_basis(out)),
                            saved_lens_basis(out))
    model = PeftModel.from_pretrained(fresh, str(out)).eval()
    tok, mask = text_for(ws, "autumn")
    edit = lambda x: model(x, tok.expand(len(x), -1, -1), mask.expand(len(x), -1))
    test = HeldOutPairs(ws.data("autumn"), "test")
    assert abs(test.score(edit)["psnr"] - m["test"]["uncalibrated"]["psnr"]) < 1e-3
    # and with the output curves saved beside it (kept: the few-step student's colours are off globally), the final
    from factory.lora.output_calibration import calibrated, saved_output_curves

    assert m["output_curves"]["kept"]
    assert abs(test.score(calibrated(edit, saved_output_curves(out)))["psnr"] - m["test"]["student"]["psnr"]) < 1e-3

    # a probe table measured on another version of the base is refused
    stale = dict(probe, base_sha256="0" * 64)
    (ws.root / "stale.json").write_text(json.dumps(stale))
    res = invoke(ws, "finetune", "autumn", "--base", "tiny", "--probe-table", str(ws.root / "stale.json"),
                 "--rank", "1", "--out", str(ws.root / "stale-run"))
    assert isinstance(res.exception, FactoryError) and "another version of the base" in str(res.exception)


def test_finetune_resumes_refuses_changes_and_starts_from_an_adapter(ws: Workspace) -> None:
    args = ["finetune", "negative", "--base", "tiny", "--layers", "down2,up1", "--rank", "2", "--batch", "2",
            "--eval-every", "2", "--checkpoint-every", "2", "--out", str(ws.root / "neg")]
    res = invoke(ws, *args, "--steps", "2")
    assert res.exit_code == 0, res.output
    res = invoke(ws, *args, "--steps", "4")
    assert res.exit_code == 0 and "resuming" in res.output and "4 steps" in res.output, res.output
    assert [r["step"] for r in read_curve(ws.root / "neg" / "curve.csv")] == [0, 2, 4]
    res = invoke(ws, *args, "--steps", "6", "--lr", "1e-2")
    assert isinstance(res.exception, FactoryError) and "lr" in str(res.exception)

    m = json.loads((ws.root / "neg" / "metrics.json").read_text())
    res = invoke(ws, "lora", "info", str(ws.root / "neg"))
    assert res.exit_code == 0 and "down2.conv" in res.output and f"{m['adapter_params']} parameters" in res.output
    res = invoke(ws, "finetune", "negative", "--base", "tiny", "--init", str(ws.root / "neg"), "--steps", "2",
                 "--batch", "2", "--eval-every", "2", "--out", str(ws.root / "neg2"))
    assert res.exit_code == 0, res.output
    m2 = json.loads((ws.root / "neg2" / "metrics.json").read_text())
    assert m2["layout"] == m["layout"] and m2["init_adapter"].endswith("neg")
    # its curve starts where the init adapter ended
    assert abs(read_curve(ws.root / "neg2" / "curve.csv")[0]["psnr"] - m["test"]["student"]["psnr"]) < 1e-3
    res = invoke(ws, "finetune", "negative", "--base", "tiny", "--init", str(ws.root / "neg"), "--rank", "4")
    assert isinstance(res.exception, FactoryError) and "--rank 4 differs" in str(res.exception)


def test_scratch_is_a_full_generator_and_cli_errors_are_one_line(ws: Workspace, factory_cli) -> None:
    res = invoke(ws, "finetune", "autumn", "--base", "tiny", "--init", "scratch", "--steps", "2", "--batch", "2",
                 "--eval-every", "1")
    assert res.exit_code == 0, res.output
    out = ws.lora("autumn") / "scratch"
    model = load_model(out)
    base = load_model(ws.base("tiny"))
    assert read_training(out)["concepts"] == ["autumn"]
    assert model_spec(model) == {**model_spec(base), "colour_basis": 3, "lens_basis": True}
    assert not all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), base.state_dict().values()))
    m = json.loads((out / "metrics.json").read_text())
    assert m["init"] == "scratch" and "adapter_params" not in m and len(read_curve(out / "curve.csv")) == 3

    # as a user runs it: one-line errors, exit code 2
    env = dict(os.environ, OMP_NUM_THREADS="1", FACTORY_PRETRAINED="none")  # no weight generator anywhere
    proc = factory_cli("finetune", "autumn", "--base", str(ws.base("tiny")), "--init", "weightgen",
                       "--synth-pairs", "12", check=False, env=env)
    assert proc.returncode == 2 and "--init weightgen: no trained weight generator" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = factory_cli("finetune", "autumn", "--base", "nope", check=False, env=env)
    assert proc.returncode == 2 and "base 'nope' not found" in proc.stderr


def test_the_kinds_of_output_curves_are_recorded_only_with_the_curves() -> None:
    """A run without output curves records no curve kinds (it resumes and is reused whatever their default); with
    them, kinds other than the runs before them had are recorded, so such a run is not resumed under other kinds."""
    from factory.lora.options import FinetuneOptions

    assert not {"curve_kinds", "curve_folds"} & set(FinetuneOptions(output_curves=False).as_record())
    assert FinetuneOptions(output_curves=True).as_record()["curve_kinds"] == "output,output+photo,photo"
    assert FinetuneOptions(output_curves=True).as_record()["curve_folds"] == 4
    before = FinetuneOptions(output_curves=True, curve_kinds="output,output+photo", curve_folds=1).as_record()
    assert not {"curve_kinds", "curve_folds"} & set(before)


def test_the_cli_and_run_defaults_of_the_training_options_are_the_library_s() -> None:
    """RunOptions and the CLI spell each default as a literal (importing factory.lora would load torch for --help):
    each must equal its chosen constant in factory.lora.options."""
    from factory.lora import options
    from factory.pipeline.run_options import RunOptions

    constants = {"augment": "AUGMENT", "screen": "SCREEN", "screen_scale": "SCREEN_SCALE",
                 "screen_windows": "SCREEN_WINDOWS", "screen_harmonics": "SCREEN_HARMONICS",
                 "screen_lattice": "SCREEN_LATTICE", "readout": "READOUT", "ema": "EMA", "colour_basis": "COLOUR_BASIS",
                 "lens_basis": "LENS_BASIS", "output_curves": "OUTPUT_CURVES"}
    for option, constant in constants.items():
        chosen = getattr(options, constant)
        defaults = {name: next(p.default for p in cli.commands[name].params if p.name == option)
                    for name in ("finetune", "run")}
        assert defaults == {"finetune": chosen, "run": chosen}, option
        assert getattr(RunOptions(target="x"), option) == chosen, option
    # --colour-basis's range is a literal too: it takes exactly 0 (none) and the degrees the generator builds
    from base_gan.generator import COLOUR_DEGREES

    for name in ("finetune", "run"):
        kind = next(p.type for p in cli.commands[name].params if p.name == "colour_basis")
        assert set(range(kind.min, kind.max + 1)) == {0, *COLOUR_DEGREES}, name
    # and --screen-windows's choices are the window sources factory.data.multiscale knows
    from factory.data.multiscale import WINDOW_SOURCES

    for name in ("finetune", "run"):
        kind = next(p.type for p in cli.commands[name].params if p.name == "screen_windows")
        assert sorted(kind.choices) == sorted(WINDOW_SOURCES), name


def test_the_readout_start_solves_the_head_into_the_lora_or_the_conv_and_lifts_the_start(ws: Workspace) -> None:
    """factory.lora.readout: on autumn's training pairs the solved head.conv3 lifts the tiny base's held-out PSNR
    before any training; written into a rank-4 LoRA (SVD of a rank-3 change) it edits as the same solve written into
    a plain copy's conv, and survives the merge; a LoRA without the head, or of rank < 3 there, is refused."""
    import copy

    from factory.lora.readout import readout_refusal, solve_readout

    base = load_model(ws.base("tiny")).eval()
    tok, mask = text_for(ws, "autumn")
    train, test = HeldOutPairs(ws.data("autumn"), split="train"), HeldOutPairs(ws.data("autumn"), split="test")

    def editor(model):
        return lambda x: model(x, tok.expand(len(x), -1, -1), mask.expand(len(x), -1))

    plain = copy.deepcopy(base)
    before = test.score(editor(plain), plain)["psnr"]
    assert solve_readout(plain, editor(plain), train.source, train.target)["lora_rank"] is None
    after = test.score(editor(plain), plain)["psnr"]
    assert after > before + 1.0, (before, after)
    lora = wrap(copy.deepcopy(base), LoraLayout(["up2", "head"], rank=4, bias=True)).eval()
    assert readout_refusal(lora) is None
    assert solve_readout(lora, editor(lora), train.source, train.target)["lora_rank"] == 3
    with torch.no_grad():
        x = test.source[:4]
        assert torch.allclose(editor(lora)(x), editor(plain)(x), atol=1e-4)
        merged = merge(lora).eval()
        assert torch.allclose(editor(merged)(x), editor(plain)(x), atol=1e-4)
    assert "head" in readout_refusal(wrap(copy.deepcopy(base), LoraLayout(["up2"], rank=4)))
    low = wrap(copy.deepcopy(base), LoraLayout(["head"], rank=2, bias=True)).eval()
    assert "below the 3" in readout_refusal(low)
    with pytest.raises(FactoryError, match="rank >= 3"):
        solve_readout(low, editor(low), train.source, train.target)


def test_the_colour_basis_is_solved_with_the_readout_and_travels_in_the_adapter(ws: Workspace, tmp_path) -> None:
    """colour_basis: a copy with head.colour edits as the base until solved; the readout solved with it fits
    autumn's per-pixel colour map better than head.conv3 alone (held-out PSNR); in a LoRA run the conv is trained
    whole, saved in the adapter and loaded back (its degree read from the file) to the same edits, kept by a merge
    and by the ONNX export; an adapter of another degree is refused."""
    import copy

    from base_gan.generator import with_colour_basis
    from factory.lora.adapters import load_adapter, saved_colour_basis
    from factory.lora.readout import solve_readout

    base = load_model(ws.base("tiny")).eval()
    tok, mask = text_for(ws, "autumn")
    train, test = HeldOutPairs(ws.data("autumn"), split="train"), HeldOutPairs(ws.data("autumn"), split="test")

    def editor(model):
        return lambda x: model(x, tok.expand(len(x), -1, -1), mask.expand(len(x), -1))

    x = test.source[:4]
    coloured = with_colour_basis(copy.deepcopy(base), 3).eval()
    with torch.no_grad():
        # a fresh module's convs may take another CPU kernel: equal to float rounding, not bit for bit
        assert torch.allclose(editor(coloured)(x), editor(base)(x), atol=1e-6)
    plain = copy.deepcopy(base)
    solve_readout(plain, editor(plain), train.source, train.target)
    lora = wrap(coloured, LoraLayout(["up2", "head"], rank=4, bias=True)).eval()
    assert solve_readout(lora, editor(lora), train.source, train.target)["colour_basis"] == 3
    without, with_basis = test.score(editor(plain), plain)["psnr"], test.score(editor(lora), lora)["psnr"]
    assert with_basis > without + 1.0, (without, with_basis)

    save_adapter(lora, tmp_path / "coloured")
    assert saved_colour_basis(tmp_path / "coloured") == 3
    assert_travels(ws, base, lora, tmp_path / "coloured", editor, x[:2], 64)
    with pytest.raises(FactoryError, match="degree 3, not 2"):
        load_adapter(copy.deepcopy(base), tmp_path / "coloured", colour_basis=2)


def assert_travels(ws: Workspace, base, lora, folder: Path, editor, x: torch.Tensor, size: int) -> None:
    """The adapter saved in ``folder`` loads onto the bare ``base`` to ``lora``'s edits of ``x``, keeps them through
    a merge, and its ONNX editor (autumn's text, ``size`` px) matches torch."""
    import copy

    from factory.export.onnx_export import EditorModule, export_onnx, text_condition, torch_vs_onnx
    from factory.lora.adapters import load_adapter

    loaded = load_adapter(copy.deepcopy(base), folder).eval()
    with torch.no_grad():
        assert torch.allclose(editor(loaded)(x), editor(lora)(x), atol=1e-5)
        merged = merge(loaded).eval()
        assert torch.allclose(editor(merged)(x), editor(lora)(x), atol=1e-5)
    module = EditorModule(merged, *text_condition(merged, find_card("autumn").instruction, ws.text_cache)).eval()
    path = export_onnx(module, folder.with_suffix(".onnx"), size)
    assert torch_vs_onnx(module, path, [x.numpy()]).max_abs < 1e-3


def lens_pairs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random photos and their underwater-like edit (a channel mix, a blur and a vignette), in [-1, 1]."""
    from factory.teachers.recipes import apply_recipe

    recipe = [{"op": "channel_mix", "matrix": [[0.5, 0.1, 0], [0.05, 0.9, 0.1], [0, 0.15, 1]]},
              {"op": "gaussian_blur", "sigma": 1.0}, {"op": "vignette", "amount": 0.5}]
    rng = np.random.default_rng(seed)
    photos = [np.kron(rng.integers(0, 256, (8, 8, 3)), np.ones((4, 4, 1))).astype(np.uint8) for _ in range(n)]

    def tensor(imgs: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 127.5 - 1

    return tensor(photos), tensor([apply_recipe(p, recipe) for p in photos])


def test_the_lens_basis_holds_a_blur_and_a_vignette_and_travels_in_the_adapter(ws: Workspace, tmp_path) -> None:
    """lens_basis: a copy with head.lens edits as the base until solved; the readout solved with it (beside the
    colour basis) fits a blur and a vignette far better than without (held-out PSNR); in a LoRA run the conv is
    trained whole, saved in the adapter and loaded back (read from the adapter's modules) to the same edits, kept by a
    merge and by the ONNX export."""
    import copy

    from base_gan.generator import with_colour_basis, with_lens_basis
    from factory.lora.adapters import saved_lens_basis
    from factory.lora.readout import solve_readout

    base = load_model(ws.base("tiny")).eval()
    tok, mask = text_for(ws, "autumn")
    (src, dst), (test_src, test_dst) = lens_pairs(12, 0), lens_pairs(4, 1)

    def editor(model):
        return lambda x: model(x, tok.expand(len(x), -1, -1), mask.expand(len(x), -1))

    def psnr(model) -> float:
        with torch.no_grad():
            mse = (editor(model)(test_src).clamp(-1, 1) - test_dst).pow(2).mean()
        return float(10 * torch.log10(4 / mse))

    coloured = with_colour_basis(copy.deepcopy(base), 3).eval()
    lensed = with_lens_basis(copy.deepcopy(coloured)).eval()
    with torch.no_grad():
        assert torch.allclose(editor(lensed)(test_src), editor(coloured)(test_src), atol=1e-6)
    plain = wrap(coloured, LoraLayout(["head"], rank=4, bias=True)).eval()
    assert solve_readout(plain, editor(plain), src, dst)["lens_basis"] is False
    lora = wrap(lensed, LoraLayout(["head"], rank=4, bias=True)).eval()
    assert solve_readout(lora, editor(lora), src, dst)["lens_basis"] is True
    assert psnr(lora) > psnr(plain) + 5.0, (psnr(plain), psnr(lora))

    save_adapter(lora, tmp_path / "lensed")
    assert saved_lens_basis(tmp_path / "lensed")
    assert_travels(ws, base, lora, tmp_path / "lensed", editor, test_src[:2], 32)


def test_a_fine_tune_with_the_readout_starts_from_it_and_charges_its_seconds(ws: Workspace) -> None:
    """--readout: the curve's first point (before any step) is the solved start, above the plain start, at the
    readout's seconds; metrics record it; a layout without the head trains without it and says so."""
    args = ["finetune", "autumn", "--base", "tiny", "--layers", "up2,head", "--rank", "4", "--steps", "2",
            "--batch", "2", "--eval-every", "2", "--checkpoint-every", "2"]
    res = invoke(ws, *args, "--readout", "--out", str(ws.root / "ro"))
    assert res.exit_code == 0 and "readout start" in res.output, res.output
    m = json.loads((ws.root / "ro" / "metrics.json").read_text())
    assert m["readout"]["lora_rank"] == 3 and m["options"]["readout"] is True
    res = invoke(ws, *args, "--no-readout", "--out", str(ws.root / "no-ro"))
    assert res.exit_code == 0, res.output
    first, plain = read_curve(ws.root / "ro" / "curve.csv")[0], read_curve(ws.root / "no-ro" / "curve.csv")[0]
    assert first["step"] == 0
    assert first["seconds"] == pytest.approx(m["readout"]["seconds"] + first["curves_seconds"], abs=1e-3)
    assert first["raw_psnr"] > plain["raw_psnr"] + 1.0, (first, plain)
    assert m["readout"]["before"]["psnr"] == pytest.approx(plain["raw_psnr"], abs=1e-3)  # the start before it
    res = invoke(ws, *args, "--readout", "--out", str(ws.root / "ro"), "--steps", "4")  # resumed: its record kept
    assert res.exit_code == 0 and "resuming" in res.output, res.output
    assert json.loads((ws.root / "ro" / "metrics.json").read_text())["readout"] == m["readout"]
    res = invoke(ws, *args[:4], "--layers", "up2", "--rank", "4", "--steps", "1", "--readout", "--out",
                 str(ws.root / "ro-nohead"))
    assert res.exit_code == 0 and "no readout start: the LoRA does not adapt head.conv3" in res.output, res.output
    assert json.loads((ws.root / "ro-nohead" / "metrics.json").read_text())["readout"] is None


def test_a_fine_tune_with_ema_keeps_and_scores_the_moving_average_of_its_weights(ws: Workspace) -> None:
    """ema: what the fine-tune saves (and scores) is the weights' moving average. At decay 0.999 it starts at the
    first step's weights and barely moves, so after 3 steps it is (nearly) a 1-step run's adapter, not a 3-step
    run's; its curve's last point is the saved adapter's score. A decay outside [0, 1) is refused."""
    from factory.lora.finetune import finetune

    base = BaseGAN.load(ws.base("tiny"))
    common = dict(init="base", layers="up2,head", rank=4, batch=2, eval_every=10**6, checkpoint_every=10**6,
                  readout=False, seed=0)

    def adapter(name: str, **kw) -> dict[str, torch.Tensor]:
        finetune(ws, "autumn", base, FinetuneOptions(**common, **kw), out_dir=ws.root / name, quiet=True,
                 log=lambda _: None)
        return load_file(ws.root / name / "adapter_model.safetensors")

    one, three, avg = adapter("ema-1", steps=1), adapter("ema-3", steps=3), adapter("ema-avg", steps=3, ema=0.999)
    moved = max(float((three[k] - one[k]).abs().max()) for k in one)
    assert moved > 1e-4
    assert max(float((avg[k] - one[k]).abs().max()) for k in one) < 0.05 * moved
    m_avg = json.loads((ws.root / "ema-avg" / "metrics.json").read_text())
    m_one = json.loads((ws.root / "ema-1" / "metrics.json").read_text())
    assert m_avg["options"]["ema"] == 0.999
    assert m_avg["test"]["student"]["psnr"] == pytest.approx(m_one["test"]["student"]["psnr"], abs=0.05)
    assert read_curve(ws.root / "ema-avg" / "curve.csv")[-1]["psnr"] == pytest.approx(
        m_avg["test"]["student"]["psnr"], abs=1e-3)
    for bad in (1.0, -0.1):
        with pytest.raises(FactoryError, match="--ema"):
            FinetuneOptions(ema=bad).validate()


def test_full_init_fine_tunes_every_weight_of_the_base(ws: Workspace) -> None:
    res = invoke(ws, "finetune", "autumn", "--base", "tiny", "--init", "full", "--steps", "3", "--batch", "2",
                 "--eval-every", "3", "--seconds", "600", "--decay-over", "budget", "--no-readout")
    assert res.exit_code == 0 and "every weight of the base fine-tuned" in res.output, res.output
    out = ws.lora("autumn") / "full"
    model, base = load_model(out), load_model(ws.base("tiny"))
    # the base given the colour and lens bases
    assert model_spec(model) == {**model_spec(base), "colour_basis": 3, "lens_basis": True}
    trained = model.state_dict()
    changed = [not torch.equal(trained[k], v) for k, v in base.state_dict().items()]
    assert sum(changed) > 0.9 * len(changed)  # the whole generator trains, not a few layers
    m = json.loads((out / "metrics.json").read_text())
    curve = read_curve(out / "curve.csv")
    assert m["init"] == "full" and m["training"]["settings"]["lr"] == 3e-4 and "adapter_params" not in m
    assert m["options"]["decay_over"] == m["training"]["settings"]["decay_over"] == "budget"
    assert m["options"]["augment"] is m["training"]["settings"]["augment"] is False  # off by default
    assert abs(curve[0]["raw_psnr"] - m["test"]["base_zero_shot"]["psnr"]) < 1e-3  # it starts as the base
    res = invoke(ws, "finetune", "autumn", "--base", "tiny", "--init", "full", "--layers", "head")
    assert isinstance(res.exception, FactoryError) and "not to --init full" in str(res.exception)


def test_tune_all_starts_from_the_merged_adapter_and_trains_every_weight(ws: Workspace) -> None:
    start = ws.root / "start-for-tune-all"
    res = invoke(ws, "finetune", "negative", "--base", "tiny", "--layers", "up1,head", "--rank", "2", "--steps", "3",
                 "--batch", "2", "--eval-every", "3", "--lr", "1e-2", "--out", str(start))
    assert res.exit_code == 0, res.output
    started = json.loads((start / "metrics.json").read_text())["test"]["student"]["psnr"]
    res = invoke(ws, "finetune", "negative", "--base", "tiny", "--init", str(start), "--tune", "all", "--steps", "3",
                 "--batch", "2", "--eval-every", "3", "--no-readout")
    assert res.exit_code == 0 and "start adapter merged" in res.output, res.output
    out = ws.lora("negative") / "tuned"
    curve, m = read_curve(out / "curve.csv"), json.loads((out / "metrics.json").read_text())
    assert abs(curve[0]["psnr"] - started) < 1e-3  # step 0 is the adapter's editor, merged into the weights
    assert abs(curve[0]["psnr"] - m["test"]["base_zero_shot"]["psnr"]) > 1e-3  # ... not the base's
    model, base = load_model(out), load_model(ws.base("tiny"))
    assert model_spec(model) == {**model_spec(base), "colour_basis": 3, "lens_basis": True}
    assert not (out / "adapter_config.json").exists()
    trained = model.state_dict()
    changed = [not torch.equal(trained[k], v) for k, v in base.state_dict().items()]
    assert sum(changed) > 0.9 * len(changed)
    assert m["training"]["settings"]["lr"] == 1e-3 and m["init_adapter"].endswith("start-for-tune-all")
    for init in ("base", "scratch", "full"):
        res = invoke(ws, "finetune", "negative", "--base", "tiny", "--init", init, "--tune", "all")
        assert isinstance(res.exception, FactoryError) and "--tune all" in str(res.exception), init


def test_a_concept_with_a_screen_trains_its_waves_conv_and_the_adapter_brings_it_back(ws: Workspace) -> None:
    """--screen auto on a halftone: the fit finds its 45-degree screen, the LoRA run also trains the stem's waves
    conv (peft modules_to_save), the adapter folder says which waves (screen.json) and loads, merges and exports
    with the position input; --screen off, and a colour concept, train without."""
    from base_gan.generator import Generator
    from factory.export.onnx_export import EditorModule, export_onnx, torch_vs_onnx
    from factory.lora.adapters import load_adapter, saved_screen

    make_pairs(ws, find_card("halftone"), 27, 32, seed=0)
    args = ["finetune", "halftone", "--base", "tiny", "--layers", "down2,up1", "--rank", "2", "--steps", "3",
            "--batch", "2", "--eval-every", "3"]
    res = invoke(ws, *args, "--out", str(ws.root / "ht"))
    assert res.exit_code == 0 and "a fixed screen" in res.output, res.output
    assert "rescaled up to 16x" in res.output, res.output  # its classic teacher runs at other scales
    m = json.loads((ws.root / "ht" / "metrics.json").read_text())
    assert m["screen_training_scale"] == 16.0 and m["options"]["screen_scale"] == 16.0
    waves = m["screen"]["screen_waves"]
    assert m["screen"]["screen_size"] == 32 and saved_screen(ws.root / "ht") == m["screen"]
    assert sorted(round(abs(f), 2) for w in waves[:2] for f in w) == [0.14] * 4, waves  # cell 5 at 45 degrees
    assert len(waves) == 6 and m["options"]["screen_harmonics"] is True  # and its second harmonics
    assert any("stem.waves" in k for k in load_file(ws.root / "ht" / "adapter_model.safetensors"))

    model = load_adapter(BaseGAN.load(ws.base("tiny")).copy(), ws.root / "ht").merge_and_unload().eval()
    assert isinstance(model, Generator) and model.config.screen_waves == waves
    assert model.stem.waves.weight.abs().sum() > 0  # trained from zero
    module = EditorModule(model, *text_for(ws, "halftone")).eval()
    path = export_onnx(module, ws.root / "ht.onnx", 32)
    assert torch_vs_onnx(module, path, [images(2, 32).numpy()]).max_abs < 1e-3

    res = invoke(ws, *args, "--screen-lattice", "--steps", "1", "--out", str(ws.root / "ht-lattice"))
    assert res.exit_code == 0, res.output
    ml = json.loads((ws.root / "ht-lattice" / "metrics.json").read_text())
    lattice = ml["screen"]["screen_lattice"]  # the two fundamentals, each with its offset
    assert [w[:2] for w in lattice] == waves[:2] and saved_screen(ws.root / "ht-lattice") == ml["screen"]
    model = load_adapter(BaseGAN.load(ws.base("tiny")).copy(), ws.root / "ht-lattice").merge_and_unload()
    assert model.config.screen_lattice == lattice and model.stem.waves.weight.shape[1] == 2 * 6 + 8

    res = invoke(ws, *args, "--screen-scale", "1", "--no-screen-harmonics", "--steps", "1", "--out",
                 str(ws.root / "ht-1x"))
    assert res.exit_code == 0 and "the pairs' size only: --screen-scale 1" in res.output, res.output
    m1 = json.loads((ws.root / "ht-1x" / "metrics.json").read_text())
    assert m1["screen_training_scale"] == 1.0 and m1["screen"]["screen_waves"] == waves[:2]
    res = invoke(ws, *args, "--screen-scale", "0.5")
    assert res.exit_code != 0 and "--screen-scale" in res.output, res.output
    res = invoke(ws, *args, "--screen", "off", "--out", str(ws.root / "ht-off"))
    assert res.exit_code == 0 and "a fixed screen" not in res.output, res.output
    assert json.loads((ws.root / "ht-off" / "metrics.json").read_text())["screen"] is None
    assert saved_screen(ws.root / "ht-off") is None
    # from an adapter saved without a screen (a weight generator's start): its waves conv starts at zero
    res = invoke(ws, "finetune", "halftone", "--base", "tiny", "--init", str(ws.root / "ht-off"), "--steps", "2",
                 "--batch", "2", "--eval-every", "2", "--out", str(ws.root / "ht-from"))
    assert res.exit_code == 0 and "a fixed screen" in res.output, res.output
    assert saved_screen(ws.root / "ht-from") == m["screen"]
    curve = read_curve(ws.root / "ht-from" / "curve.csv")
    off = json.loads((ws.root / "ht-off" / "metrics.json").read_text())["test"]["student"]["psnr"]
    assert abs(curve[0]["psnr"] - off) < 1e-3  # step 0 is the start adapter exactly
    res = invoke(ws, "finetune", "negative", "--base", "tiny", "--layers", "down2,up1", "--rank", "2", "--steps", "2",
                 "--batch", "2", "--eval-every", "2", "--out", str(ws.root / "neg-screen"))
    assert res.exit_code == 0 and "a fixed screen" not in res.output, res.output


def test_with_extras_adds_each_missing_conv_at_zero_and_keeps_the_ones_there() -> None:
    """with_extras: a base given the screen's waves conv and the colour basis edits exactly as before (both zero);
    a model that already has them comes back with its trained convs kept; neither asked: the model itself."""
    from base_gan.generator import build_generator
    from factory.lora.adapters import colour_basis_of, screen_of, with_extras

    base = build_generator(seed=0, ngf=8, heads=2, image_size=32).eval()
    screen = {"screen_waves": [[0.1, 0.1], [0.1, -0.1]], "screen_size": 32}
    assert with_extras(base, None, 0) is base
    extended = with_extras(base, screen, 3).eval()
    assert screen_of(extended)["screen_waves"] == screen["screen_waves"] and colour_basis_of(extended) == 3
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(extended(x), base(x), atol=1e-6)
        extended.head.colour.weight.fill_(0.01)
        extended.stem.waves.weight.fill_(0.01)
        again = with_extras(extended, screen, 3)
        assert again is extended and not torch.allclose(again(x), base(x), atol=1e-3)
    assert screen_of(base) is None and colour_basis_of(base) == 0  # the base itself is left as it was
