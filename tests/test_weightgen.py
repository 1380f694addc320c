"""The weight generator: tokenization round trip, weight dataset, DDPM training, resume, sampling, baselines."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import run_factory
from safetensors.torch import load_file

from base_gan.generator import build_generator, target_modules
from base_gan.models import load_model, save_model
from factory.core.errors import FactoryError
from factory.core.workspace import Workspace
from factory.pipeline.steps import generate_adapter
from weight_generator.baselines import average_adapter, distance_table, retrieve_by_text
from weight_generator.dataset import WeightDataset, collect_adapters, collect_workspace, embed_instructions
from weight_generator.sample import WeightGenerator
from weight_generator.tokenize import ADAPTER_WEIGHTS, AdapterLayout, WeightTokenizer, flatten, read_adapter
from weight_generator.train import WeightGenSettings, WeightGenTrainer

GEN = dict(ngf=8, image_size=32)
GROUPS = ["down2", "up1"]
TEXTS = {
    "sepia": "give it a warm brown sepia tone",
    "pencil": "turn the photo into a pencil sketch",
    "sunset": "warm golden sunset light",
    "icy": "cool icy blue colour grade",
    "cartoon": "make it look like a cartoon",
    "noir": "high-contrast black and white film noir",
}
TINY = dict(block_size=32, channels=(8, 16, 16), width=32, depth=2, emb_dim=16, heads=2, lr=2e-3, warmup=1,
            checkpoint_every=1000)


def make_adapter(folder: Path, base_dir: Path, instruction: str, seed: int, rank: int = 2,
                 groups: list[str] = GROUPS) -> Path:
    """A 'trained' adapter: peft's init with seed 0 (as every factory fine-tune), then B (and A) moved."""
    from peft import LoraConfig, get_peft_model

    base = load_model(base_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = get_peft_model(base, LoraConfig(target_modules=target_modules(base, groups), r=rank, lora_alpha=rank))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05 * (1 + seed % 3))
            elif "lora_A" in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.01)
        first_b = next(p for n, p in model.named_parameters() if "lora_B" in n)
        first_b.view(-1)[:5] = 0.0  # exact zeros must survive the round trip too
    model.save_pretrained(str(folder))
    (folder / "metrics.json").write_text(json.dumps({"instruction": instruction, "base": str(base_dir)}))
    return folder


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and do not fight other jobs for the cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """A workspace with a tiny base and six adapters of one layout, plus the text cache."""
    root = tmp_path_factory.mktemp("wg")
    ws = Workspace(root / "ws")
    base_dir = ws.base("tiny")
    save_model(build_generator(seed=1, **GEN), base_dir)
    for i, (concept, text) in enumerate(TEXTS.items()):
        make_adapter(ws.lora(concept), base_dir, text, seed=i + 1)
    return {"ws": ws, "base": base_dir, "dataset": collect_workspace(ws)}


def adapted_output(base_dir: Path, adapter: Path) -> torch.Tensor:
    from peft import PeftModel

    base = load_model(base_dir)
    model = PeftModel.from_pretrained(base, str(adapter)).eval()
    x = torch.linspace(-1, 1, 2 * 3 * 32 * 32).reshape(2, 3, 32, 32)
    text = torch.randn(1, 5, 384, generator=torch.Generator().manual_seed(0)).expand(2, -1, -1)
    with torch.no_grad():
        return model(x, text, torch.ones(2, 5, dtype=torch.bool))


def trainer(tiny: dict, out: Path, **kw) -> WeightGenTrainer:
    settings = WeightGenSettings(**{**TINY, **kw})
    return WeightGenTrainer(out, tiny["dataset"], settings, text_cache=tiny["ws"].text_cache)


# -- tokenization -----------------------------------------------------------------------------------
@pytest.mark.parametrize("stats", ["tensor", "element"])
def test_tokenization_round_trip_is_exact(tiny, tmp_path, stats):
    ds = tiny["dataset"]
    tok = WeightTokenizer.fit(ds.weights, ds.layout, ds.adapter_config, block_size=32, stats=stats)
    src = tiny["ws"].lora("pencil")
    blocks = tok.tokenize_adapter(src)
    assert blocks.shape == (tok.n_blocks, 32) and tok.n_blocks == -(-ds.layout.numel // 32)
    assert int(tok.valid_mask().sum()) == ds.layout.numel
    assert torch.all(blocks[~tok.valid_mask()] == 0)
    normalized = torch.cat([tok.encode(ds.weights)[:, :, :].reshape(len(ds), -1)[:, : ds.layout.numel]])
    assert 0.3 < float(normalized.std()) < 3.0, "blocks are normalized by the dataset statistics"

    tok.save(tmp_path / "tok")
    reloaded = WeightTokenizer.load(tmp_path / "tok")
    out = reloaded.write_adapter(blocks, tmp_path / "back")
    original, restored = load_file(str(src / ADAPTER_WEIGHTS)), load_file(str(out / ADAPTER_WEIGHTS))
    assert original.keys() == restored.keys()
    for k in original:
        assert torch.equal(original[k], restored[k]), k
    assert any(bool((v == 0).any()) for v in restored.values())
    assert torch.equal(adapted_output(tiny["base"], src), adapted_output(tiny["base"], out))


@pytest.mark.parametrize("stats", ["tensor", "element"])
def test_a_tensor_every_adapter_shares_is_stored_once_and_left_out_of_the_blocks(tiny, tmp_path, stats):
    ds = tiny["dataset"]
    weights = ds.weights.clone()
    a_keys = [k for k in ds.layout.keys if "lora_A" in k]
    spans = dict(zip(ds.layout.keys, torch.tensor(ds.layout.numels).cumsum(0).tolist()))
    n_a = 0
    for k, n in zip(ds.layout.keys, ds.layout.numels):
        if k in a_keys:  # one frozen A for every concept, as batched adapter training makes them
            weights[:, spans[k] - n : spans[k]] = weights[0, spans[k] - n : spans[k]]
            n_a += n
    tok = WeightTokenizer.fit(weights, ds.layout, ds.adapter_config, block_size=32, stats=stats)
    assert tok.n_free == ds.layout.numel - n_a and tok.n_blocks == -(-tok.n_free // 32)
    assert int(tok.valid_mask().sum()) == tok.n_free
    tok.save(tmp_path / "tok")
    reloaded = WeightTokenizer.load(tmp_path / "tok")
    assert torch.equal(reloaded.decode(tok.encode(weights)).to(torch.float32), weights)  # exact round trip
    noise = torch.randn(tok.n_blocks, 32, generator=torch.Generator().manual_seed(0))
    generated = reloaded.decode(noise)  # whatever the blocks hold, the shared A comes back exactly
    for k, n in zip(ds.layout.keys, ds.layout.numels):
        if k in a_keys:
            assert torch.equal(generated[spans[k] - n : spans[k]].to(torch.float32),
                               weights[0, spans[k] - n : spans[k]])
    unshared = WeightTokenizer.fit(weights, ds.layout, ds.adapter_config, block_size=32, share_fixed=False)
    assert unshared.n_free == ds.layout.numel and unshared.fixed is None


def test_canonical_order_and_layout(tiny):
    tensors, config = read_adapter(tiny["ws"].lora("sepia"))
    layout = AdapterLayout.of(tensors, config)
    assert list(layout.keys) == sorted(tensors)
    assert layout.numel == sum(v.numel() for v in tensors.values())
    vec = flatten(tensors, layout)
    first = tensors[layout.keys[0]].reshape(-1)
    assert torch.equal(vec[: first.numel()].float(), first)
    assert AdapterLayout.from_dict(json.loads(json.dumps(layout.to_dict()))) == layout


# -- the weight dataset -----------------------------------------------------------------------------
def test_collect_reads_texts_and_refuses_mismatched_adapters(tiny, tmp_path):
    ds = tiny["dataset"]
    assert ds.concepts == sorted(TEXTS) and ds.instructions == [TEXTS[c] for c in ds.concepts]
    assert ds.weights.shape == (6, ds.layout.numel) and ds.base == str(tiny["base"].resolve())
    ds.save(tmp_path / "saved")
    again = WeightDataset.load(tmp_path / "saved")
    assert torch.equal(again.weights, ds.weights) and again.fingerprint() == ds.fingerprint()

    good = [tiny["ws"].lora(c) for c in ("sepia", "icy")]
    bad_rank = make_adapter(tmp_path / "rank4", tiny["base"], "x", seed=9, rank=4)
    with pytest.raises(FactoryError, match=r"rank4: adapter layout differs .*'r' is 4 instead of 2"):
        collect_adapters(good + [bad_rank], ["a", "b", "c"])
    bad_groups = make_adapter(tmp_path / "groups", tiny["base"], "x", seed=9, groups=["down2", "up2"])
    with pytest.raises(FactoryError, match=r"groups: adapter layout differs .*target_modules"):
        collect_adapters(good + [bad_groups], ["a", "b", "c"])
    other_base = make_adapter(tmp_path / "elsewhere", tiny["base"], "x", seed=9)
    (other_base / "metrics.json").write_text(json.dumps({"instruction": "x", "base": "/nowhere/other-base"}))
    with pytest.raises(FactoryError, match=r"elsewhere: fine-tuned on base '/nowhere/other-base'"):
        collect_adapters(good + [other_base], ["a", "b", "c"])
    # the same base copied with its workspace (same folder name, another path) is one base
    copied = make_adapter(tmp_path / "copied", tiny["base"], "x", seed=9)
    (copied / "metrics.json").write_text(json.dumps({"instruction": "x", "base": f"/elsewhere/{tiny['base'].name}"}))
    assert len(collect_adapters(good + [copied], ["a", "b", "c"])) == 3


def test_instruction_embeddings_saved_with_the_dataset_are_read_not_encoded_again(tiny, tmp_path):
    from factory.text.encoder import TextEncoder

    folder = tiny["dataset"].save(tmp_path / "texts")
    assert WeightDataset.load(folder).text_embeddings == {}
    embed_instructions(folder)  # no text cache: every instruction through the model
    saved = WeightDataset.load(folder)
    fresh = TextEncoder("minilm")  # a new process's encoder, no cache
    assert torch.allclose(saved.instruction_embeddings(fresh), fresh.pooled(saved.instructions), atol=1e-6)
    reader = TextEncoder("minilm")
    assert torch.equal(WeightDataset.load(folder).instruction_embeddings(reader), saved.text_embeddings["minilm"])
    assert reader.n_encoded == 0
    # a subset keeps its rows' embeddings; a dataset whose texts changed since ignores the saved ones
    sub = saved.subset(saved.concepts[:2])
    assert torch.equal(sub.text_embeddings["minilm"], saved.text_embeddings["minilm"][:2])
    meta = json.loads((folder / "dataset.json").read_text())
    meta["instructions"][0] = "something else entirely"
    (folder / "dataset.json").write_text(json.dumps(meta))
    assert WeightDataset.load(folder).text_embeddings == {}


def test_collect_cli_and_mismatch_error(tmp_path):
    ws = Workspace(tmp_path / "ws")
    base_dir = ws.base("b")
    save_model(build_generator(**GEN), base_dir)
    for i, c in enumerate(("sepia", "icy", "noir")):
        make_adapter(ws.lora(c), base_dir, TEXTS[c], seed=i)
    proc = run_factory(ws.root, "weightgen", "collect", "--exclude", "noir")
    assert "2 adapters" in proc.stdout
    meta = json.loads((ws.weightgen("default") / "dataset.json").read_text())
    assert meta["concepts"] == ["icy", "sepia"] and meta["instructions"] == [TEXTS["icy"], TEXTS["sepia"]]
    make_adapter(ws.lora("wide"), base_dir, "wide", seed=5, rank=3)
    proc = run_factory(ws.root, "weightgen", "collect", "--name", "all", check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "wide" in proc.stderr and "'r' is 3 instead of 2" in proc.stderr
    assert "Traceback" not in proc.stderr and not ws.weightgen("all").exists()


# -- training ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["block", "joint"])
def test_training_lowers_the_loss(tiny, tmp_path, variant):
    tr = trainer(tiny, tmp_path / variant, variant=variant, steps=40, batch=32 if variant == "block" else 4)
    before = tr.eval_loss()
    tr.train()
    after = tr.eval_loss()
    assert after < 0.8 * before, (before, after)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in tr.state.history)
    tr.save_final()
    gen = WeightGenerator.load(tmp_path / variant, text_cache=tiny["ws"].text_cache)
    assert gen.model.variant == variant == gen.training["variant"]
    tensors, config = read_adapter(gen.sample_to_folder("add a blue tint", tmp_path / "s", steps=2))
    assert AdapterLayout.of(tensors, config) == tiny["dataset"].layout
    assert all(torch.isfinite(v).all() for v in tensors.values())


def test_training_resumes_from_a_checkpoint(tiny, tmp_path):
    a = trainer(tiny, tmp_path / "a", steps=6, checkpoint_every=3, batch=16, variant="block")
    a.train()
    assert sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir()) == ["step-0000003", "step-0000006"]
    a.s.steps = 9
    a.train()
    b = trainer(tiny, tmp_path / "a", steps=9, checkpoint_every=3, batch=16, variant="block")
    assert b.resume() and b.state.step == 9  # the newest checkpoint of the continued run
    c_dir = tmp_path / "c"
    c = trainer(tiny, c_dir, steps=6, checkpoint_every=3, batch=16, variant="block")
    c.train()
    resumed = trainer(tiny, c_dir, steps=9, checkpoint_every=3, batch=16, variant="block")
    assert resumed.resume() and resumed.state.step == 6
    resumed.train()
    assert [h["step"] for h in resumed.state.history[6:]] == [7, 8, 9]
    assert [h["loss"] for h in resumed.state.history[6:]] == pytest.approx(
        [h["loss"] for h in a.state.history[6:]], rel=1e-5)
    for k, v in resumed.model.state_dict().items():
        assert torch.allclose(v, a.model.state_dict()[k], atol=1e-6), k
    changed = trainer(tiny, c_dir, steps=9, checkpoint_every=3, batch=16, variant="block", lr=1e-4)
    with pytest.raises(FactoryError, match="different lr"):
        changed.resume()
    state = c_dir / "checkpoints" / "step-0000009" / "state.json"
    older = json.loads(state.read_text())
    del older["settings"]["recipe_tokens"]  # a checkpoint written before the setting existed
    state.write_text(json.dumps(older))
    assert trainer(tiny, c_dir, steps=12, checkpoint_every=3, batch=16, variant="block").resume()
    with pytest.raises(FactoryError, match="different recipe_tokens"):
        trainer(tiny, c_dir, steps=12, checkpoint_every=3, batch=16, variant="block", recipe_tokens=True).resume()


# -- sampling ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory) -> Path:
    out = tiny["ws"].weightgen("default")
    tiny["dataset"].save(out)  # as `factory weightgen collect` leaves it
    tr = trainer(tiny, out, steps=30, batch=6)  # the default variant (joint)
    tr.train()
    tr.save_final()
    return out


@pytest.mark.parametrize("steps", [1, 4])
def test_sampling_gives_a_loadable_adapter(tiny, trained, tmp_path, steps):
    gen = WeightGenerator.load(trained, text_cache=tiny["ws"].text_cache)
    out = gen.sample_to_folder("make it look like an old photograph", tmp_path / "gen", steps=steps, seed=3)
    tensors, config = read_adapter(out)
    assert AdapterLayout.of(tensors, config) == tiny["dataset"].layout
    assert all(torch.isfinite(v).all() for v in tensors.values())
    assert any(float(v.abs().max()) > 0 for v in tensors.values())
    y = adapted_output(tiny["base"], out)
    assert y.shape == (2, 3, 32, 32) and torch.isfinite(y).all()
    meta = json.loads((out / "weightgen.json").read_text())
    assert meta["steps"] == steps and meta["instruction"].startswith("make it")
    again = gen.sample("make it look like an old photograph", steps=steps, seed=3)
    assert all(torch.equal(again[k], tensors[k]) for k in tensors), "same seed, same adapter"


def test_cli_train_resume_and_sample(tiny, tmp_path):
    from factory.cli import cli

    ws = tiny["ws"]
    tiny["dataset"].save(ws.weightgen("cli"))
    run = CliRunner().invoke
    def args(steps: int, *more: str, name: str = "cli") -> list[str]:
        return ["--workspace", str(ws.root), "weightgen", "train", "--name", name, "--steps", str(steps),
                "--block-size", "32", "--batch", "3", "--checkpoint-every", "2", *more]

    r = run(cli, args(4), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "step 4" in r.output and (ws.weightgen("cli") / "denoiser" / "diffusion_pytorch_model.safetensors").is_file()
    r = run(cli, args(4))
    assert isinstance(r.exception, FactoryError) and "--resume" in str(r.exception)
    r = run(cli, args(6, "--resume"), catch_exceptions=False)
    assert "resuming" in r.output and "step 6" in r.output
    r = run(cli, ["--workspace", str(ws.root), "weightgen", "sample", "add a soft pastel look", "--name", "cli",
                  "--out", str(tmp_path / "s"), "--steps", "2"], catch_exceptions=False)
    assert r.exit_code == 0 and "nearest training adapter" in r.output
    assert (tmp_path / "s" / "adapter_config.json").is_file()
    tiny["dataset"].save(ws.weightgen("cli-rt"))
    r = run(cli, args(2, "--recipe-tokens", name="cli-rt"), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert json.loads((ws.weightgen("cli-rt") / "training.json").read_text())["settings"]["recipe_tokens"] is True


def test_init_adapter_for_finetune_checks_the_base(tiny, trained, tmp_path):
    out = generate_adapter("make it sepia", tmp_path / "init", workspace=tiny["ws"], base=tiny["base"], seed=0,
                           name="default")
    assert AdapterLayout.of(*read_adapter(out)) == tiny["dataset"].layout  # a generated adapter: no colour conv
    save_model(build_generator(**GEN), tmp_path / "another")
    with pytest.raises(FactoryError, match="trained on adapters of base"):
        generate_adapter("make it sepia", tmp_path / "init2", workspace=tiny["ws"], base=tmp_path / "another",
                         name="default")


def test_recipe_tokens_name_each_op_and_its_level_after_the_encoders_tokens(tiny):
    """One token per op the grammar reads (its op slot and its (op, level) slot, a MiniLM token's norm), after the
    encoder's tokens; none for a text outside the grammar; without ``recipe`` the encoder's tokens unchanged."""
    import random

    from concepts.family import FAMILY_OPS, write_instruction
    from factory.text.encoder import TextEncoder
    from weight_generator.text_condition import RECIPE_TOKEN_NORM, condition_tokens, recipe_tokens

    rng = random.Random(0)
    mild, strong = (write_instruction(((op, level), ("vignette", 2)), rng) for op, level in (("warmer", 1),
                                                                                              ("warmer", 3)))
    a, b = recipe_tokens(mild, 384), recipe_tokens(strong, 384)
    assert a.shape == b.shape == (2, 384)
    assert torch.allclose(a.norm(dim=1), torch.full((2,), RECIPE_TOKEN_NORM))
    order = list(FAMILY_OPS)
    assert {int(i) for i in a.nonzero()[:, 1]} & set(range(len(order))) == {order.index("warmer"),
                                                                            order.index("vignette")}
    (same,) = [i for i in range(2) if torch.equal(a[i], b[i])]  # the vignette token; warmer's level differs
    assert not torch.equal(a[1 - same], b[1 - same])
    outside = "make it look like a rainy day in Paris"
    assert recipe_tokens(outside, 384).shape == (0, 384)
    cache = tiny["ws"].text_cache
    plain, plain_mask = TextEncoder.from_name("minilm", cache_dir=cache).tokens([mild, outside])
    torch.testing.assert_close(condition_tokens([mild, outside], cache_dir=cache), (plain, plain_mask))
    emb, mask = condition_tokens([mild, outside], cache_dir=cache, recipe=True)
    n = int(plain_mask[0].sum())
    assert mask.sum(1).tolist() == [n + 2, int(plain_mask[1].sum())]
    torch.testing.assert_close(emb[0, :n], plain[0, :n])
    torch.testing.assert_close(emb[0, n:n + 2], a)
    with pytest.raises(FactoryError, match="width of at least"):
        recipe_tokens(mild, 64)


def test_a_generator_trained_with_recipe_tokens_samples_with_them(tiny, tmp_path):
    """The setting is saved with the generator, and sampling feeds the denoiser the same tokens: turning it off
    at sampling time changes the adapter of a text the grammar reads, not of one it does not."""
    from weight_generator.text_condition import recipe_tokens

    tr = trainer(tiny, tmp_path / "rt", steps=12, batch=6, recipe_tokens=True)
    parsed = [t for t in tiny["dataset"].instructions if len(recipe_tokens(t, 384))]
    assert parsed, "the tiny dataset has a text the grammar reads"
    tr.train()
    tr.save_final()
    gen = WeightGenerator.load(tmp_path / "rt", text_cache=tiny["ws"].text_cache)
    assert gen.training["settings"]["recipe_tokens"] is True
    outside = "make it look like a rainy day in Paris"
    with_tokens = {t: gen.sample_blocks([t]) for t in (parsed[0], outside)}
    gen.training["settings"]["recipe_tokens"] = False
    assert not torch.allclose(gen.sample_blocks([parsed[0]]), with_tokens[parsed[0]])
    torch.testing.assert_close(gen.sample_blocks([outside]), with_tokens[outside])


# -- baselines --------------------------------------------------------------------------------------
def test_baselines_and_copy_check(tiny):
    ds = tiny["dataset"]
    avg = average_adapter(ds)
    assert torch.allclose(avg, ds.weights.mean(0), atol=1e-7)
    i, sim = retrieve_by_text(TEXTS["noir"], ds, cache_dir=tiny["ws"].text_cache)
    assert ds.concepts[i] == "noir" and sim == pytest.approx(1.0, abs=1e-5)
    j, _ = retrieve_by_text("a grey pencil drawing", ds, cache_dir=tiny["ws"].text_cache)
    assert ds.concepts[j] == "pencil"
    tok = WeightTokenizer.fit(ds.weights, ds.layout, ds.adapter_config, block_size=32)
    copy = ds.weights[2].clone()
    table = distance_table({"copy": copy, "average": avg}, ds, tok.scale_vector(), reference=ds.weights[0])
    rows = {r["candidate"]: r for r in table["rows"]}
    assert rows["copy"]["nearest_training"] == ds.concepts[2] and rows["copy"]["distance_to_nearest"] == 0.0
    assert rows["average"]["distance_to_average"] == pytest.approx(0.0, abs=1e-6)
    assert table["typical"]["train_nearest_median"] > 0
    assert rows["average"]["distance_to_nearest"] < table["typical"]["train_nearest_median"]


# -- factory finetune --init weightgen ----------------------------------------------------------------
def test_finetune_starts_from_the_generated_adapter(tiny, trained, tmp_path):
    from concepts.cards import find_card
    from factory.data.card_pairs import make_pairs
    from factory.evaluation.curves import read_curve
    from factory.pipeline.steps import finetune

    ws = tiny["ws"]
    card = find_card("autumn")
    make_pairs(ws, card, 12, 32, seed=0)
    out = tmp_path / "ft"
    m = finetune("autumn", workspace=ws, base=tiny["base"], init="weightgen", steps=2, batch=2, eval_every=1,
                 disc_nf=8, out_dir=out, quiet=True)
    init = out / "init"
    meta = json.loads((init / "weightgen.json").read_text())
    assert meta["instruction"] == card.instruction and Path(meta["weightgen"]) == ws.weightgen("default")
    assert m["init_adapter"] == str(init.resolve()) and m["training"]["steps"] == 2
    tensors, config = read_adapter(out)  # the generator's LoRA tensors, plus the colour basis's conv trained whole
    assert tensors.pop("base_model.model.head.colour.weight").shape[:2] == (3, 19)
    assert tensors.pop("base_model.model.head.lens.weight").shape[:2] == (3, 36)  # the lens basis's, whole too
    layout = AdapterLayout.of(tensors, config)
    assert (layout.keys, layout.shapes) == (tiny["dataset"].layout.keys, tiny["dataset"].layout.shapes)
    # the curve starts at the generated adapter's quality, not at the base's (before the output curves, which the
    # first row also shows: they would ship if training stopped there)
    from factory.evaluation.heldout import HeldOutPairs, text_conditioned
    from factory.lora.adapters import load_adapter

    model = load_adapter(load_model(tiny["base"]), init).eval()
    step0 = HeldOutPairs(ws.data("autumn")).score(text_conditioned(model, card.instruction, ws.text_cache), model)
    assert read_curve(out / "curve.csv")[0]["raw_psnr"] == pytest.approx(step0["psnr"], abs=1e-3)
    assert m["test"]["init_adapter"]["psnr"] == pytest.approx(step0["psnr"], abs=1e-3)
    assert abs(step0["psnr"] - m["test"]["base_zero_shot"]["psnr"]) > 1e-4, "generated adapter is not a no-op"

    other = Workspace(tmp_path / "other")
    shutil.copytree(ws.data("autumn"), other.data("autumn"))
    save_model(build_generator(**GEN), other.base("b"))
    opts = dict(init="weightgen", steps=1)
    with pytest.MonkeyPatch.context() as mp:  # no weight generator in the workspace nor shipped
        mp.setenv("FACTORY_PRETRAINED", "none")
        with pytest.raises(FactoryError, match="--init weightgen: no trained weight generator"):
            finetune("autumn", workspace=other, base=other.base("b"), out_dir=tmp_path / "x", quiet=True, **opts)
    # the shipped weight generator is the fallback, and it refuses a base it was not trained on
    with pytest.raises(FactoryError, match=r"--init weightgen: .*trained on adapters of base 'editfactory-base'"):
        finetune("autumn", workspace=other, base=other.base("b"), out_dir=tmp_path / "y", quiet=True, **opts)


def test_ridge_leave_one_out_is_exact_and_beats_the_mean_when_the_text_predicts_the_adapter():
    from weight_generator.baselines import Ridge

    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(24, 8, generator=g), dim=1)
    y = x @ torch.randn(8, 30, generator=g) + 0.5 + 0.05 * torch.randn(24, 30, generator=g)
    fit = Ridge.fit(x, y)
    brute = []
    for i in range(len(x)):
        keep = [j for j in range(len(x)) if j != i]
        one = Ridge.fit(x[keep], y[keep], alphas=(fit.alpha,))
        brute.append(float(((one.predict(x[i : i + 1]) - y[i : i + 1]) ** 2).mean()))
    assert fit.loo_error == pytest.approx(sum(brute) / len(brute), rel=1e-6)
    assert fit.loo_error < 0.1 * fit.mean_loo_error
    # values every adapter shares (a frozen shared lora_A) change neither the choice nor the error
    shared = torch.cat([y, torch.full((24, 300), 0.3)], 1)
    with_shared = Ridge.fit(x, shared, shared.std(0).clamp_min(1e-8))
    alone = Ridge.fit(x, y, y.std(0))
    assert (with_shared.alpha, with_shared.loo_r2) == (alone.alpha, pytest.approx(alone.loo_r2, rel=1e-9))
    noise = Ridge.fit(x, torch.randn(24, 30, generator=g))  # texts that say nothing about the adapter
    assert noise.loo_error > 0.9 * noise.mean_loo_error
    with pytest.raises(FactoryError, match="at least 3"):
        Ridge.fit(x[:2], y[:2])


def test_recipe_ridge_predicts_an_unseen_family_concept_from_the_ops_its_text_names(tmp_path):
    """Adapters that add one effect per (op, level): left-out family concepts' adapters are predicted from
    the parse of their texts far better than by the mean adapter; a text outside the grammar falls back."""
    from concepts.family import FAMILY_OPS, sample_concepts
    from weight_generator.baselines import baseline_vector

    g = torch.Generator().manual_seed(0)
    effect = {(op, lv): torch.randn(12, generator=g) for op in FAMILY_OPS for lv in (1, 2, 3)}
    family = sample_concepts(250, seed=3)
    weights = torch.stack([sum(effect[o] for o in c.ops) + 0.02 * torch.randn(12, generator=g) for c in family])
    layout = AdapterLayout.of({"w.lora_B.weight": torch.zeros(12)}, {})
    train = WeightDataset([c.name for c in family[10:]], [c.instruction for c in family[10:]], weights[10:], layout,
                          {})
    errors, mean_errors = [], []
    for new, truth in zip(family[:10], weights[:10]):
        vec, info = baseline_vector("recipe", new.instruction, train)
        assert "fallback" not in info and info["adapters"] == 240
        errors.append(float((vec - truth).norm()))
        mean_errors.append(float((train.weights.mean(0) - truth).norm()))
    assert sum(errors) < 0.5 * sum(mean_errors)
    vec, info = baseline_vector("recipe", "make it look like a rainy day in Paris", train,
                                cache_dir=tmp_path / "text")
    assert "names no edit of the family" in info["fallback"] and vec.shape == (12,)
    # a weight dataset whose instructions the grammar mostly does not read: the embedding ridge, said so
    texts = [c.instruction for c in family[10:12]] + [f"a photo of place number {i}" for i in range(30)]
    few = WeightDataset([f"c{i}" for i in range(32)], texts, weights[10:42], layout, {})
    vec, info = baseline_vector("recipe", family[0].instruction, few, cache_dir=tmp_path / "text")
    assert "reads fewer than 3 of the 32" in info["fallback"] and vec.shape == (12,)


def test_recipe_features_hold_the_ops_their_pairs_and_the_text_in_equal_parts():
    """Two texts with the same ops at other levels share the ops and pairs parts, not the (op, level) part; a
    one-op text has no pairs part; a text outside the grammar has no features."""
    import random

    from concepts.family import FAMILY_OPS, write_instruction
    from weight_generator.baselines import recipe_features

    x, y = "warmer", "vignette"
    rng = random.Random(0)
    texts = [write_instruction(ops, rng) for ops in (((x, 1), (y, 2)), ((x, 3), (y, 2)), ((y, 1),))]
    texts.append("make it look like a rainy day in Paris")
    emb = torch.nn.functional.normalize(torch.randn(4, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    a, b, c, none = recipe_features(texts, emb)
    n_hot, n_ops = 3 * len(FAMILY_OPS), len(FAMILY_OPS)
    n_pairs = n_ops * (n_ops - 1) // 2
    parts = lambda v: (v[:n_hot], v[n_hot:n_hot + n_ops], v[n_hot + n_ops:n_hot + n_ops + n_pairs], v[-8:])
    for v, k in ((a, 4), (c, 3)):  # k nonzero parts of equal norm
        assert float(v.norm()) == pytest.approx(1.0)
        norms = [float(p.norm()) for p in parts(v)]
        assert sorted(norms)[-k:] == pytest.approx([1 / k**0.5] * k) and sum(x > 0 for x in norms) == k
    pa, pb = parts(a), parts(b)
    torch.testing.assert_close(pa[1], pb[1])
    torch.testing.assert_close(pa[2], pb[2])
    assert float(pa[0] @ pb[0]) < float(pa[0] @ pa[0])  # another level somewhere
    assert float(parts(c)[2].norm()) == 0 and none is None


def test_gaussian_kernel_ridge_follows_a_nonlinear_text_to_adapter_map_that_linear_ridge_cannot():
    from weight_generator.baselines import Ridge

    g = torch.Generator().manual_seed(1)
    x = torch.nn.functional.normalize(torch.randn(80, 3, generator=g), dim=1)
    y = torch.cat([x[:, :1] * x[:, 1:2], x[:, 2:3] ** 2], 1).repeat(1, 10)  # no linear part at all
    y = y + 0.01 * torch.randn(y.shape, generator=g)
    linear, gauss = Ridge.fit(x, y), Ridge.fit(x, y, gammas=(1.0, 3.0, 10.0))
    assert linear.gamma == 0.0 and gauss.gamma > 0
    assert linear.loo_r2 < 0.1 < 0.8 < gauss.loo_r2
    i, keep = 5, [j for j in range(80) if j != 5]  # its leave-one-out error is the refit's, as for the linear one
    one = Ridge.fit(x[keep], y[keep], alphas=(gauss.alpha,), gammas=(gauss.gamma,))
    resid = float(((one.predict(x[i : i + 1]) - y[i : i + 1]) ** 2).mean())
    k = Ridge.gram(x, x, gauss.gamma)
    h = k @ torch.linalg.inv(k + gauss.alpha * torch.eye(80, dtype=torch.float64))
    loo_i = (y[i].double() - (h @ y.double())[i]) / (1 - h[i, i])
    assert resid == pytest.approx(float((loo_i**2).mean()), rel=1e-5)


@pytest.mark.parametrize("kind", ["mean", "ridge", "retrieval", "recipe", "recipe+weightgen"])
def test_baseline_inits_are_adapters_of_the_generators_layout(tiny, trained, tmp_path, kind):
    from factory.pipeline.steps import initial_adapter
    from weight_generator.baselines import baseline_vector
    from weight_generator.sample import WeightGenerator

    out = initial_adapter(kind, TEXTS["noir"], tmp_path / kind, workspace=tiny["ws"], base=tiny["base"],
                          name="default")
    ds = tiny["dataset"]
    tensors, config = read_adapter(out)
    assert AdapterLayout.of(tensors, config) == ds.layout
    vec = flatten(tensors, ds.layout).to(torch.float32)
    want = {"mean": ds.weights.mean(0), "retrieval": ds.weights[ds.index("noir")]}.get(kind)
    if kind == "recipe+weightgen":  # halfway between the recipe adapter and the generator's mean sample
        recipe = baseline_vector("recipe", TEXTS["noir"], ds, cache_dir=tiny["ws"].text_cache)[0]
        gen = WeightGenerator.load(trained, text_cache=tiny["ws"].text_cache).mean_sample(TEXTS["noir"])
        assert (recipe - gen).norm() > 1e-3 * recipe.norm()  # two different starts, so the mean is a third
        want = ((recipe.double() + gen.double()) / 2).float()
    if want is not None:
        torch.testing.assert_close(vec, want, rtol=1e-5, atol=1e-6)
    else:  # ridge, recipe: between the mean and the concept's own adapter for its own text
        own = ds.weights[ds.index("noir")]
        assert (vec - own).norm() < (ds.weights.mean(0) - own).norm()
    meta = json.loads((out / "init.json").read_text())
    assert meta["init"] == kind and meta["instruction"] == TEXTS["noir"]
    save_model(build_generator(**GEN), tmp_path / "another")
    with pytest.raises(FactoryError, match="fine-tuned on base"):
        initial_adapter(kind, "make it sepia", tmp_path / "x", workspace=tiny["ws"], base=tmp_path / "another",
                        name="default")


def test_hypernet_init_without_a_hypernetwork_says_what_makes_one(tiny, trained, tmp_path):
    from factory.pipeline.steps import initial_adapter

    with pytest.raises(FactoryError, match=r"no Text-to-LoRA hypernetwork.*pretrain family"):
        initial_adapter("hypernet", TEXTS["noir"], tmp_path / "h", workspace=tiny["ws"], base=tiny["base"],
                        name="default")
    assert not (tmp_path / "h").exists()
