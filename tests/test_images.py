"""Reading user photos: orientation, bit depth, alpha, grayscale, and bad files skipped, not fatal."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from factory.core.errors import FactoryError
from factory.core.images import UnreadableImage, read_image
from factory.data.photos import default_photos, folder_photos
from tests.conftest import photo, write_rgb


def make_bad_folder(root: Path) -> dict[str, Path]:
    """A folder with every kind of file a real photo folder contains, good and bad."""
    files = {}
    files["good"] = write_rgb(root / "good.jpg", photo(1))
    jpeg = cv2.imencode(".jpg", photo(2))[1].tobytes()
    files["corrupt"] = root / "sub" / "corrupt.jpg"
    files["corrupt"].parent.mkdir(parents=True)
    files["corrupt"].write_bytes(jpeg[: len(jpeg) // 2])  # truncated mid-scan
    files["empty"] = root / "empty.png"
    files["empty"].write_bytes(b"")
    files["text"] = root / "notes.png"
    files["text"].write_text("this is not an image\n")
    rgb16 = (photo(3).astype(np.uint16) * 257)
    files["16bit"] = root / "deep.png"
    assert cv2.imwrite(str(files["16bit"]), cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))
    rgba = np.dstack([photo(4), np.full(photo(4).shape[:2], 128, np.uint8)])
    files["rgba"] = root / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(files["rgba"])
    files["gray"] = root / "gray.bmp"
    assert cv2.imwrite(str(files["gray"]), cv2.cvtColor(photo(5), cv2.COLOR_RGB2GRAY))
    (root / "readme.txt").write_text("ignored: not an image extension")
    return files


def test_each_kind_of_file(tmp_path: Path) -> None:
    files = make_bad_folder(tmp_path)
    for key in ("good", "16bit", "rgba", "gray"):
        img = read_image(files[key])
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, key
    # 16-bit is scaled, not truncated
    assert abs(int(read_image(files["16bit"]).astype(int).mean()) - int(photo(3).mean())) <= 1
    # alpha 128 over white lifts the image towards white
    assert read_image(files["rgba"]).mean() > photo(4).mean() + 20
    for key in ("corrupt", "empty", "text"):
        with pytest.raises(UnreadableImage):
            read_image(files[key])


def test_folder_skips_and_lists_bad_files(tmp_path: Path) -> None:
    make_bad_folder(tmp_path)
    photos = folder_photos(tmp_path, test_fraction=0.25)
    assert sorted(p.name for p in photos.photos) == ["alpha.png", "deep.png", "good.jpg", "gray.bmp"]
    assert sorted(Path(p).name for p, _ in photos.skipped) == ["corrupt.jpg", "empty.png", "notes.png"]
    assert [p.split for p in photos.photos].count("test") == 1


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.fromarray(photo(6, h=40, w=80))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif.tobytes(), quality=95)
    assert read_image(path).shape[:2] == (80, 40)


def test_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(FactoryError, match="no readable images"):
        folder_photos(tmp_path)


def _cross_split_distances(photos) -> list[tuple[int, str, str]]:
    """(pixel-level near-duplicate distance, train photo, test photo) for every train x test pair."""
    from factory.data.near_duplicates import _distance, photo_hashes

    hashes = {p.name: photo_hashes(p.rgb) for p in photos.photos}
    return [(_distance(hashes[a.name], hashes[b.name]), a.name, b.name)
            for a in photos.split("train") for b in photos.split("test")]


def test_default_photos_split_is_disjoint_by_pixels() -> None:
    from factory.data.near_duplicates import THRESHOLD, near_duplicate_groups

    photos = default_photos()
    assert len(photos.split("test")) >= 20, "the protocol needs >= 20 test photos (factory photos fetch)"
    assert all(p.rgb.ndim == 3 and p.rgb.shape[2] == 3 for p in photos.photos)
    closest = min(_cross_split_distances(photos))
    assert closest[0] > THRESHOLD, f"a train photo and a test photo show one scene: {closest}"
    # the fixed groups are the ones the pixels give (the stereo pair is one group)
    groups = near_duplicate_groups([p.rgb for p in photos.photos])
    by_group: dict[int, set[str]] = {}
    for p, g in zip(photos.photos, groups):
        by_group.setdefault(g, set()).add(p.group)
    assert all(len(names) == 1 for names in by_group.values())
    assert len({p.group for p in photos.photos}) == len(set(groups))


def test_a_user_folder_keeps_near_duplicates_on_one_side(tmp_path: Path) -> None:
    from skimage import data

    from factory.data.near_duplicates import THRESHOLD

    scene = data.astronaut()
    h, w = scene.shape[:2]
    write_rgb(tmp_path / "a-scene.png", scene)
    write_rgb(tmp_path / "m-scene-smaller.jpg", cv2.resize(scene, (300, 300), interpolation=cv2.INTER_AREA))
    write_rgb(tmp_path / "z-scene-crop.png", scene[int(0.3 * h):int(0.85 * h), int(0.1 * w):int(0.65 * w)])
    left, right = data.stereo_motorcycle()[:2]
    write_rgb(tmp_path / "b-left.png", left)
    write_rgb(tmp_path / "y-right.png", right)
    for i, im in enumerate((data.coffee(), data.chelsea(), data.rocket(), data.retina(), data.hubble_deep_field())):
        write_rgb(tmp_path / f"other-{i}.png", im)
    photos = folder_photos(tmp_path, test_fraction=0.5)
    assert photos.split("test") and photos.split("train")
    closest = min(_cross_split_distances(photos))
    assert closest[0] > THRESHOLD, f"near-duplicates on both sides: {closest}"
    groups = {p.name: p.group for p in photos.photos}
    assert groups["a-scene.png"] == groups["m-scene-smaller.jpg"] == groups["z-scene-crop.png"]
    assert groups["b-left.png"] == groups["y-right.png"] and groups["other-0.png"] != groups["a-scene.png"]
