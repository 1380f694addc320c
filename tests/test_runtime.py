"""The torch-free editor runtime and `factory apply`: images, folders with bad files, video, tiles, errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from factory.core.errors import FactoryError
from factory.runtime.editor import Editor, locate_editor, to_input, to_pixels
from tests.conftest import photo, run_factory, write_rgb


@pytest.fixture(scope="module")
def editor_path(tmp_path_factory) -> Path:
    """A tiny exported editor that is far from the identity (so geometry mistakes would show)."""
    from base_gan.generator import build_generator
    from factory.export.onnx_export import EditorModule, export_onnx, set_metadata

    gen = build_generator(seed=3, ngf=8, heads=2)
    with torch.no_grad():
        gen.head.conv3.weight.mul_(300.0)  # the delta is now tens of grey levels, not ~1
    folder = tmp_path_factory.mktemp("editor")
    path = export_onnx(EditorModule(gen), folder / "editor.onnx", 64)
    set_metadata(path, {"concept": "tiny", "precision": "fp32", "stride": "16", "input_size": "64"})
    return path


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def test_edit_matches_the_model_and_keeps_sizes(editor_path: Path) -> None:
    ed = Editor(editor_path, threads=1)
    img = photo(1, 64, 80)
    direct = to_pixels(ed.run(to_input([img])))[0]
    assert _psnr(direct, img) < 35  # the editor really edits
    out = ed.edit([img, photo(2, 50, 70), photo(3, 64, 80)], batch=2)
    np.testing.assert_array_equal(out[0], direct)  # multiples of 16: exactly the model's output
    assert out[1].shape == (50, 70, 3) and out[2].shape == (64, 80, 3)
    resized = ed.edit([photo(2, 96, 128)], size=32)[0]
    assert resized.shape == (96, 128, 3)


def test_an_editor_folder_is_accepted_like_factory_apply_does(editor_path: Path) -> None:
    by_folder = Editor(editor_path.parent, threads=1)
    assert by_folder.path == editor_path
    img = photo(4, 64, 64)
    np.testing.assert_array_equal(by_folder.edit([img])[0], Editor(editor_path, threads=1).edit([img])[0])
    with pytest.raises(FactoryError, match=r"no editor\.int8\.onnx"):
        Editor(editor_path.parent, precision="int8")


def test_tiles_cover_the_image_and_blend(editor_path: Path) -> None:
    ed = Editor(editor_path, threads=1)
    img = photo(5, 150, 200)
    whole = ed.edit([img])[0]
    tiled = ed.edit([img], tile=64, batch=3)[0]
    assert tiled.shape == whole.shape == img.shape
    # tiles see less context (attention is global), but misplaced or unblended tiles would be far off
    assert _psnr(tiled, whole) > 25, _psnr(tiled, whole)
    assert _psnr(tiled, whole) > _psnr(img, whole) + 5


def test_runtime_errors(editor_path: Path, tmp_path: Path) -> None:
    ed = Editor(editor_path)
    with pytest.raises(FactoryError, match="not a multiple of the editor's stride 16"):
        ed.run(np.zeros((1, 3, 40, 48), np.float32))
    with pytest.raises(FactoryError, match="not a multiple"):
        ed.edit([photo(1)], size=40)
    with pytest.raises(FactoryError, match="not found"):
        locate_editor("no-such-concept", tmp_path)
    (tmp_path / "editors" / "half").mkdir(parents=True)
    with pytest.raises(FactoryError, match=r"no editor\.int8\.onnx"):
        locate_editor("half", tmp_path, "int8")
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(FactoryError, match="not a loadable ONNX model"):
        Editor(bad)


def _write_video(path: Path, frames: int, size: tuple[int, int], fps: float) -> None:
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, size)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(cv2.cvtColor(photo(100 + i, size[1], size[0]), cv2.COLOR_RGB2BGR))
    writer.release()


def _read_video(path: Path) -> tuple[int, float, tuple[int, int]]:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    info = (
        n,
        cap.get(cv2.CAP_PROP_FPS),
        (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))),
    )
    cap.release()
    return info


def test_apply_folder_with_bad_files_and_videos(editor_path: Path, workspace: Path, tmp_path: Path) -> None:
    src = tmp_path / "shots"
    good = {"a.png": photo(1, 64, 80), "nested/b.jpg": photo(2, 50, 70), "c.png": photo(3, 33, 47)}
    for name, img in good.items():
        write_rgb(src / name, img)
    (src / "truncated.jpg").write_bytes(cv2.imencode(".jpg", photo(4))[1].tobytes()[:200])
    (src / "text.png").write_text("not an image")
    _write_video(src / "clip.avi", 7, (72, 40), 12.0)
    _write_video(tmp_path / "walk.mp4", 5, (64, 48), 24.0)
    out = tmp_path / "out"

    proc = run_factory(
        workspace,
        "apply",
        str(editor_path),
        str(src),
        str(tmp_path / "walk.mp4"),
        str(tmp_path / "missing.png"),
        "-o",
        str(out),
        "--batch",
        "3",
    )
    assert "3 image(s), 2 video(s) (12 frames)" in proc.stdout and "3 skipped" in proc.stdout
    for bad in ("truncated.jpg", "text.png", "missing.png"):
        assert bad in proc.stderr
    for name, img in good.items():
        edited = cv2.imread(str(out / "shots" / name))
        assert edited is not None and edited.shape == img.shape, name
    direct = to_pixels(Editor(editor_path).run(to_input([good["a.png"]])))[0]
    np.testing.assert_array_equal(cv2.cvtColor(cv2.imread(str(out / "shots" / "a.png")), cv2.COLOR_BGR2RGB), direct)
    assert _read_video(out / "shots" / "clip.avi") == (7, 12.0, (72, 40))
    assert _read_video(out / "walk.mp4") == (5, 24.0, (64, 48))
    assert not list(out.rglob(".*tmp*"))  # every output was renamed into place


def test_apply_single_file_output_and_errors(editor_path: Path, workspace: Path, tmp_path: Path) -> None:
    img = write_rgb(tmp_path / "in.png", photo(7, 96, 128))
    run_factory(workspace, "apply", str(editor_path), str(img), "-o", str(tmp_path / "edited.jpg"), "--size", "48")
    assert cv2.imread(str(tmp_path / "edited.jpg")).shape == (96, 128, 3)

    missing = run_factory(workspace, "apply", "nope", str(img), "-o", str(tmp_path / "o"), check=False)
    assert missing.returncode == 2 and missing.stderr.strip().startswith("error: editor 'nope' not found")
    assert len(missing.stderr.strip().splitlines()) == 1
    bad_size = run_factory(
        workspace, "apply", str(editor_path), str(img), "-o", str(tmp_path / "o"), "--size", "40", check=False
    )
    assert bad_size.returncode == 2 and "--size 40 is not a multiple of the editor's stride 16" in bad_size.stderr
    nothing = run_factory(
        workspace, "apply", str(editor_path), str(tmp_path / "none"), "-o", str(tmp_path / "o"), check=False
    )
    assert nothing.returncode == 2 and "no images or videos to edit" in nothing.stderr


def test_apply_never_imports_torch(editor_path: Path, workspace: Path, tmp_path: Path) -> None:
    img = write_rgb(tmp_path / "in" / "x.png", photo(9, 64, 64))
    _write_video(tmp_path / "in" / "v.avi", 3, (48, 32), 10.0)
    probe = (
        "import sys\n"
        "from factory.cli import main\n"
        f"sys.argv = ['factory', '--workspace', {str(workspace)!r}, 'apply', {str(editor_path)!r}, "
        f"{str(img.parent)!r}, '-o', {str(tmp_path / 'out')!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = sorted(m for m in sys.modules\n"
        "    if m.split('.')[0] in ('torch', 'torchvision', 'transformers', 'diffusers', 'peft', 'kornia'))\n"
        "print('HEAVY', heavy)\n"
        "print('ORT', 'onnxruntime' in sys.modules, 'cv2' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout, proc.stdout
    assert "ORT True True" in proc.stdout  # the probe did run the editor
    assert (tmp_path / "out" / "in" / "x.png").is_file() and _read_video(tmp_path / "out" / "in" / "v.avi")[0] == 3
