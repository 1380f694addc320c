"""``factory run`` end to end on a tiny configuration, resume after the synth stage, and the report in Chromium.

The tiny configuration is a shipped-assets folder made with ``factory pretrain install`` (a 32 px
base and a weight generator trained for a few steps on adapters of it; ``tiny_assets.py``), handed
to the CLI through ``FACTORY_PRETRAINED``, so the run uses the same fallback a fresh machine does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import run_factory

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("FACTORY_TEST_ARTIFACTS", REPO / "test-artifacts"))
NEW_TEXT = "make it look like a chilly blue winter morning"
FAMILY_TEXT = "make it a little warmer and add a strong vignette"  # the concept family's grammar reads it
RUN = ["--seconds", "4", "--synth-pairs", "24", "--eval-every", "2", "--export-size", "32"]


@pytest.fixture(scope="module")
def shipped(tiny_pretrained) -> Path:
    return tiny_pretrained


@pytest.fixture(scope="module")
def finished(shipped, tmp_path_factory) -> dict:
    """``factory run NEW_TEXT`` stopped after synth, then run again to the end, then once more."""
    ws = tmp_path_factory.mktemp("run") / "ws"
    env = {**os.environ, "FACTORY_PRETRAINED": str(shipped), "OMP_NUM_THREADS": "1"}
    first = run_factory(ws, "run", NEW_TEXT, "--teacher", "classic", *RUN, "--stop-after", "synth", env=env)
    concept = json.loads(next((ws / "runs").glob("*/state.json")).read_text())["stages"]["card"]["info"]["name"]
    manifest = ws / "data" / concept / "manifest.jsonl"
    before = (manifest.stat().st_mtime_ns, manifest.read_bytes())
    second = run_factory(ws, "run", NEW_TEXT, "--teacher", "classic", *RUN, env=env, timeout=600)
    after = (manifest.stat().st_mtime_ns, manifest.read_bytes())
    third = run_factory(ws, "run", NEW_TEXT, "--teacher", "classic", *RUN, env=env)
    return {"ws": ws, "concept": concept, "first": first, "second": second, "third": third,
            "manifest": (before, after), "shipped": shipped}


def test_run_from_text_to_editor_and_report(finished):
    ws, concept = finished["ws"], finished["concept"]
    assert concept == "chilly-blue-winter-morning"
    assert (ws / "concepts" / f"{concept}.yaml").is_file(), "a new text gets its own card"
    editor = ws / "editors" / concept
    for name in ("editor.onnx", "editor.int8.onnx", "editor.ort", "editor.int8.ort", "card.json"):
        assert (editor / name).is_file(), name
    assert (ws / "loras" / concept / "adapter_model.safetensors").is_file()
    report = ws / "reports" / f"{concept}.html"
    assert f"report: {report}" in finished["second"].stdout and f"editor: {editor}" in finished["second"].stdout
    page = report.read_text(encoding="utf-8")
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    ev = json.loads((ws / "runs" / concept / "eval.json").read_text())
    assert len(images) == 3 * len(ev["grid"]) + 1, "grid (source, teacher, editor per row) + the training curve"
    assert "src=\"http" not in page and "<script" not in page, "self-contained"
    for key in ("identity", "editor_fp32", "editor_int8"):
        assert f"{ev[key]['psnr']:.2f}" in page
    state = json.loads((ws / "runs" / concept / "state.json").read_text())
    init = state["stages"]["init"]["info"]
    assert init["weightgen"] == str(finished["shipped"] / "editfactory-weightgen"), "the shipped weight generator"
    metrics = json.loads((ws / "loras" / concept / "metrics.json").read_text())
    assert metrics["init_adapter"] == init["init"] and metrics["base"].endswith("editfactory-base")
    start = metrics["test"]["init_adapter"]  # the zero-shot editor's quality, next to the fine-tuned one
    assert start["init"] == "weightgen" and f"{start['psnr']:.2f}" in page


def test_run_resumes_after_synth_without_redoing_it(finished):
    assert "stopped after synth" in finished["first"].stdout
    assert "2 stage(s) run (card, synth)" in finished["first"].stdout
    before, after = finished["manifest"]
    assert before == after, "synth did not rewrite the pairs"
    second = finished["second"]
    assert "synth: up to date, skipped" in second.stderr and "card: up to date, skipped" in second.stderr
    assert "5 stage(s) run (init, finetune, export, eval, report)" in second.stdout
    assert "0 stage(s) run (none), 7 up to date" in finished["third"].stdout


def test_zero_shot_editor_needs_no_teacher_data_and_is_evaluated_when_pairs_exist(finished, tmp_path):
    env = {**os.environ, "FACTORY_PRETRAINED": str(finished["shipped"]), "OMP_NUM_THREADS": "1"}
    concept = finished["concept"]
    fresh = tmp_path / "fresh"
    r = run_factory(fresh, "run", NEW_TEXT, "--teacher", "classic", "--zero-shot", "--init", "ridge",
                    "--export-size", "32", "--no-ort", env=env)
    assert not (fresh / "data" / concept / "manifest.jsonl").exists(), "no teacher data"
    assert (fresh / "editors" / concept / "editor.int8.onnx").is_file()
    assert (fresh / "loras" / concept / "adapter_model.safetensors").read_bytes() == (
        fresh / "runs" / concept / "init" / "adapter_model.safetensors").read_bytes()
    assert json.loads((fresh / "runs" / concept / "init" / "init.json").read_text())["init"] == "ridge"
    assert json.loads((fresh / "runs" / concept / "eval.json").read_text())["test_pairs"] == 0
    assert "quality not measured" in r.stderr and (fresh / "reports" / f"{concept}.html").is_file()

    copy = tmp_path / "copy"  # the finished run's workspace: its teacher pairs serve the evaluation
    shutil.copytree(finished["ws"], copy)
    run_factory(copy, "run", NEW_TEXT, "--teacher", "classic", "--zero-shot", "--export-size", "32", "--no-ort",
                env=env)
    ev = json.loads((copy / "runs" / concept / "eval.json").read_text())
    assert ev["test_pairs"] > 0 and "psnr" in ev["editor_int8"]
    assert json.loads((copy / "loras" / concept / "metrics.json").read_text())["zero_shot"] is True
    r = run_factory(fresh, "run", NEW_TEXT, "--zero-shot", "--init", "base", env=env, check=False)
    assert r.returncode == 2 and "needs a starting adapter" in r.stderr


def test_tune_all_trains_every_weight_from_the_start_and_exports_that_generator(finished, tmp_path):
    env = {**os.environ, "FACTORY_PRETRAINED": str(finished["shipped"]), "OMP_NUM_THREADS": "1"}
    concept, ws = finished["concept"], tmp_path / "ws"
    shutil.copytree(finished["ws"], ws)  # the same start and pairs: only the fine-tune and what follows change
    r = run_factory(ws, "run", NEW_TEXT, "--teacher", "classic", *RUN, "--no-ort", "--tune", "all", env=env)
    assert "4 stage(s) run (finetune, export, eval, report)" in r.stdout and "finetune (every weight)" in r.stderr
    tuned = ws / "loras" / concept / "tuned"
    m = json.loads((tuned / "metrics.json").read_text())
    init = json.loads((ws / "runs" / concept / "state.json").read_text())["stages"]["init"]["info"]["init"]
    assert m["init_adapter"] == init and (tuned / "diffusion_pytorch_model.safetensors").is_file()
    assert abs(m["test"]["init_adapter"]["psnr"] - json.loads(
        (ws / "loras" / concept / "metrics.json").read_text())["test"]["init_adapter"]["psnr"]) < 1e-3  # same start
    card = json.loads((ws / "editors" / concept / "card.json").read_text())
    assert card["adapter"] is None and "every weight fine-tuned" in card["adapter_note"]
    assert (ws / "editors" / concept / "editor.onnx").read_bytes() != (
        finished["ws"] / "editors" / concept / "editor.onnx").read_bytes()
    page = (ws / "reports" / f"{concept}.html").read_text(encoding="utf-8")
    assert str(tuned / "metrics.json") in page and f"{m['training']['steps']}" in page
    # the readout (on by default) is written into the unmerged conv here: the report shows it beside the start
    assert m["test"]["readout_start"]["psnr"] > m["test"]["init_adapter"]["psnr"] and "readout start" in page
    r = run_factory(ws, "run", NEW_TEXT, "--zero-shot", "--tune", "all", env=env, check=False)
    assert r.returncode == 2 and "--zero-shot --tune all" in r.stderr


def test_auto_init_takes_the_start_measured_best_for_this_base(shipped, tmp_path):
    from base_gan.models import BaseGAN
    from weight_generator.init_choice import write_family_choice, write_init_choice

    assets = tmp_path / "assets"
    shutil.copytree(shipped, assets)
    env = {**os.environ, "FACTORY_PRETRAINED": str(assets), "OMP_NUM_THREADS": "1"}
    sha = BaseGAN.load(assets / "editfactory-base").sha256
    ws = tmp_path / "ws"  # one workspace: a choice recorded after a run makes the next run redo its init stage
    for recorded_for, expected in (("another base", "weightgen"), (sha, "mean")):
        write_init_choice(assets / "editfactory-weightgen", "mean", recorded_for, {"results": "validation.json"})
        run_factory(ws, "run", NEW_TEXT, "--teacher", "classic", "--zero-shot", "--export-size", "32", "--no-ort",
                    env=env)
        init = next((ws / "runs").glob("*/init/init.json"))
        assert json.loads(init.read_text())["init"] == expected
        why = json.loads(next((ws / "runs").glob("*/state.json")).read_text())["stages"]["init"]["info"]["why"]
        assert ("validation.json" in why) == (expected == "mean")
    # a second record for concepts the family's own recipe teaches: a text the grammar reads takes it, others not
    write_family_choice(assets / "editfactory-weightgen", "retrieval", sha, {"results": "family.json"})
    for text, expected in ((FAMILY_TEXT, "retrieval"), (NEW_TEXT, "mean")):
        run_factory(ws, "run", text, "--teacher", "classic", "--zero-shot", "--export-size", "32", "--no-ort", env=env)
        card = next(c for c in (ws / "concepts").glob("*.yaml") if text in c.read_text())
        assert json.loads((ws / "runs" / card.stem / "init" / "init.json").read_text())["init"] == expected
    assert json.loads((assets / "editfactory-weightgen" / "init_choice.json").read_text())["init"] == "mean"


def test_only_cards_taught_by_the_family_recipe_of_their_text_count_as_family(tmp_path):
    from concepts.cards import find_card, parse_card
    from concepts.family import parse_instruction, recipe_of, sample_concepts, teaches_family_recipe

    assert parse_instruction(find_card("sepia").instruction).ops is not None  # the grammar reads the built-in's text
    assert not teaches_family_recipe(find_card("sepia"))  # but its hand-written recipe is not the family's
    fam = sample_concepts(1, seed=5)[0]
    assert teaches_family_recipe(parse_card(fam.card_data(), "family concept"))
    other = {**fam.card_data(), "teacher": {"kind": "classic", "recipe": recipe_of([("sepia", 2)])}}
    assert fam.ops != (("sepia", 2),) and not teaches_family_recipe(parse_card(other, "other recipe"))


def test_pretrain_install_refuses_a_heldout_concept_the_base_saw(tiny_pretrained, tmp_path):
    m = json.loads((tiny_pretrained / "manifest.json").read_text())
    assert m["heldout"] == ["autumn"] and m["weightgen"]["stored_dtype"] == "float16"
    base = tiny_pretrained / "editfactory-base"
    wg = tiny_pretrained / "editfactory-weightgen"
    r = run_factory(tmp_path / "ws", "pretrain", "install", "--base", str(base), "--weightgen", str(wg),
                    "--heldout", "golden-hour", "--recipe", "x", "--dest", str(tmp_path / "bad"), check=False)
    assert r.returncode == 2 and "golden-hour" in r.stderr and not (tmp_path / "bad").exists()
    r = run_factory(tmp_path / "ws", "pretrain", "install", "--base", str(base), "--weightgen", str(wg),
                    "--heldout", "autumn,no-such-card", "--recipe", "x", "--dest", str(tmp_path / "bad"), check=False)
    assert r.returncode == 2 and "no-such-card" in r.stderr and "not built-in" in r.stderr
    assert not (tmp_path / "bad").exists()


def test_pretrain_info_prints_the_manifest_and_shortens_long_lists(tiny_pretrained, tmp_path):
    from factory.cli.pretrain_cmd import _some

    r = run_factory(tmp_path / "ws", "pretrain", "info", env={**os.environ, "FACTORY_PRETRAINED": str(tiny_pretrained)})
    assert "recipe: " in r.stdout and "held out of both (try `factory run` on one): autumn" in r.stdout
    assert _some([f"fam-{i}" for i in range(1024)]).endswith("fam-11, ... (1012 more in manifest.json)")
    assert _some(["a", "b"]) == "a, b"
    r = run_factory(tmp_path / "ws", "pretrain", "info", env={**os.environ, "FACTORY_PRETRAINED": "none"}, check=False)
    assert r.returncode == 2 and "no pretrained assets are installed" in r.stderr


def test_run_refuses_bad_input(shipped, workspace):
    env = {**os.environ, "FACTORY_PRETRAINED": str(shipped)}
    r = run_factory(workspace, "run", "no-such-card", env=env, check=False)
    assert r.returncode == 2 and "no-such-card" in r.stderr and "Traceback" not in r.stderr
    r = run_factory(workspace, "run", "   ", env=env, check=False)
    assert r.returncode == 2 and "empty concept" in r.stderr
    r = run_factory(workspace, "run", "autumn", "--base", "missing", env=env, check=False)
    assert r.returncode == 2 and "base 'missing' not found" in r.stderr
    r = run_factory(workspace, "report", "autumn", check=False)
    assert r.returncode == 2 and "no evaluation for 'autumn'" in r.stderr


# -- the report in headless Chromium ------------------------------------------------------------------
def ensure_chromium() -> tuple[str, str]:
    """Debian's chromium and chromium-driver, installed with apt when absent."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = sudo + ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"]
        if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
            subprocess.run(sudo + ["apt-get", "update", "-q"], env=env, capture_output=True)
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                pytest.fail(f"could not install chromium + chromium-driver with apt: {proc.stderr[-500:]}")
    return shutil.which("chromium"), shutil.which("chromedriver")


def test_report_renders_in_headless_chromium(finished):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1200,3000",
                 f"--user-data-dir={finished['ws'].parent / 'chromium-profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        report = finished["ws"] / "reports" / f"{finished['concept']}.html"
        driver.get(report.resolve().as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
        assert len(images) >= 4
        undecoded = [alt for alt, complete, w, h in images if not (complete and w > 0 and h > 0)]
        assert not undecoded, f"images not decoded: {undecoded}"
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        assert finished["concept"] in driver.title
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "report.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        driver.quit()


def test_init_choice_keeps_both_records_each_for_its_own_base(tmp_path):
    from weight_generator.init_choice import chosen_init, write_family_choice, write_init_choice

    write_family_choice(tmp_path, "recipe", "sha-a", {"results": "family.json"})
    write_init_choice(tmp_path, "ridge", "sha-a", {"results": "named.json"})  # rewriting one keeps the other
    assert chosen_init(tmp_path, "sha-a")["init"] == "ridge" and "family" not in chosen_init(tmp_path, "sha-a")
    assert chosen_init(tmp_path, "sha-a", family=True) == {"init": "recipe", "base_sha256": "sha-a",
                                                          "results": "family.json", "family": True}
    assert chosen_init(tmp_path, "sha-b", family=True) is None
    write_init_choice(tmp_path, "mean", "sha-b", {})  # the family record is for another base: the named one serves
    assert chosen_init(tmp_path, "sha-b", family=True)["init"] == "mean"


def test_a_zero_init_run_trains_the_layout_chosen_on_validation_concepts(shipped, tmp_path):
    from factory.lora.adapters import layout_of_adapter
    from factory.pipeline.run_stages import DEFAULT_LAYERS, DEFAULT_RANK

    env = {**os.environ, "FACTORY_PRETRAINED": str(shipped), "OMP_NUM_THREADS": "1"}
    ws = tmp_path / "ws"
    run_factory(ws, "run", "sepia", "--init", "base", *RUN, "--stop-after", "finetune", env=env)
    layout = layout_of_adapter(ws / "loras" / "sepia")
    assert DEFAULT_LAYERS == "stem,down1,up2,head"  # bench/results/layouts.md
    assert set(layout.groups) == set(DEFAULT_LAYERS.split(",")) and set(layout.ranks.values()) == {DEFAULT_RANK}


def test_a_halftone_run_makes_an_editor_that_places_its_screen_in_tiles_too(shipped, tmp_path):
    """``factory run halftone`` (screen auto): the adapter trains the waves conv, the exported editor takes the
    position input, and ``factory apply`` edits a photo larger than a tile through it."""
    from factory.core.atomic import atomic_write_png
    from factory.core.images import read_image
    from factory.runtime.editor import Editor

    env = {**os.environ, "FACTORY_PRETRAINED": str(shipped), "OMP_NUM_THREADS": "1"}
    ws = tmp_path / "ws"
    r = run_factory(ws, "run", "halftone", *RUN, "--no-ort", env=env, timeout=600)
    assert "a fixed screen" in r.stderr, r.stderr
    assert (ws / "loras" / "halftone" / "screen.json").is_file()
    editor = Editor(ws / "editors" / "halftone")
    assert editor.position_name == "position"
    card = json.loads((ws / "editors" / "halftone" / "card.json").read_text())
    assert card["position"]["screen"] == json.loads((ws / "loras" / "halftone" / "screen.json").read_text())
    photo = (np.random.default_rng(0).uniform(0, 255, (200, 300, 3))).astype(np.uint8)
    atomic_write_png(tmp_path / "photo.png", photo)
    run_factory(ws, "apply", "halftone", str(tmp_path / "photo.png"), "--out", str(tmp_path / "out.png"),
                "--path", "tiled", "--tile", "128", env=env)
    assert read_image(tmp_path / "out.png").shape == photo.shape
