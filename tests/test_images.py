"""Reading user photos: orientation, bit depth, alpha, grayscale, and bad files skipped, not fatal."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from factory.core.errors import FactoryError
from factory.core.images import UnreadableImage, read_image
from factory.data.photos import DEFAULT_TEST_PHOTOS, DEFAULT_TRAIN_PHOTOS, default_photos, folder_photos
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


def test_default_photos_split_never_overlaps() -> None:
    photos = default_photos()
    train = {p.name for p in photos.split("train")}
    test = {p.name for p in photos.split("test")}
    assert train == set(DEFAULT_TRAIN_PHOTOS) and test == set(DEFAULT_TEST_PHOTOS)
    assert not train & test and len(test) >= 2
    assert all(p.rgb.ndim == 3 and p.rgb.shape[2] == 3 for p in photos.photos)
