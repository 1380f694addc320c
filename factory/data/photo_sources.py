"""Offline sources of real photographs for the default photo set.

* scikit-image's colour sample photos and scikit-learn's two sample images (inside their wheels);
* the photographs among two Debian wallpaper packages (``mate-backgrounds``: its nature photos;
  ``plasma-workspace-wallpapers``: the wallpapers that are photographs, one size each), fetched once
  with ``apt-get download`` and unpacked with ``dpkg-deb -x`` into a cache folder: nothing is
  installed, and only the chosen photos are kept, at most ``MAX_SIDE`` px on their longer side (the
  pairs are crops of 64-256 px; ``factory photos fetch``).

Every photo has a stable id ``<source>:<name>``; ``factory.data.photos`` fixes their split.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from factory.core.errors import FactoryError

CACHE_ENV = "FACTORY_PHOTO_CACHE"
MAX_SIDE = 1280

SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "ihc.png",
                  "motorcycle_left.png", "motorcycle_right.png", "retina.jpg", "rocket.jpg")
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")

_PLASMA = "usr/share/wallpapers/{}/contents/images/{}"
_MATE = "usr/share/backgrounds/mate/nature/{}.jpg"
#: Debian package -> {photo name: path inside the package}; only photographs (no renders or abstract art)
WALLPAPER_PHOTOS: dict[str, dict[str, str]] = {
    "mate-backgrounds": {n.lower(): _MATE.format(n) for n in (
        "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "Storm",
        "TwoWings", "Wood", "YellowFlower")},
    "plasma-workspace-wallpapers": {
        **{n.lower(): _PLASMA.format(n, "1920x1080.jpg") for n in (
            "BytheWater", "ColdRipple", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey", "Kite", "OneStandsOut",
            "Path", "summer_1am")},
        "colorfulcups": _PLASMA.format("ColorfulCups", "2560x1600.jpg"),
    },
}


@dataclass(frozen=True)
class PhotoFile:
    """One photo of the default set: its stable id and the file holding it."""

    id: str
    path: Path


def cache_dir() -> Path:
    """Where fetched photos live: ``$FACTORY_PHOTO_CACHE``, else ``$XDG_CACHE_HOME/editfactory/photos``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "editfactory" / "photos"


def wheel_photos() -> list[PhotoFile]:
    """scikit-image's and scikit-learn's sample photos (always present: they ship in the wheels)."""
    skimage_dir = Path(str(resources.files("skimage") / "data"))
    sklearn_dir = Path(str(resources.files("sklearn.datasets") / "images"))
    return ([PhotoFile(f"skimage:{Path(n).stem}", skimage_dir / n) for n in SKIMAGE_PHOTOS]
            + [PhotoFile(f"sklearn:{Path(n).stem}", sklearn_dir / n) for n in SKLEARN_PHOTOS])


def wallpaper_photos(folder: Path | None = None) -> list[PhotoFile]:
    """The wallpaper photos present in the cache (none until ``fetch_wallpapers`` ran)."""
    folder = folder or cache_dir()
    found = []
    for package, photos in WALLPAPER_PHOTOS.items():
        for name in photos:
            path = folder / package / f"{name}.jpg"
            if path.is_file():
                found.append(PhotoFile(f"{package.split('-')[0]}:{name}", path))
    return found


def wallpapers_missing(folder: Path | None = None) -> list[str]:
    """Ids of the wallpaper photos not in the cache yet."""
    have = {p.id for p in wallpaper_photos(folder)}
    return [f"{pkg.split('-')[0]}:{n}" for pkg, photos in WALLPAPER_PHOTOS.items() for n in photos
            if f"{pkg.split('-')[0]}:{n}" not in have]


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def _download(package: str, where: Path) -> Path:
    """``apt-get download PACKAGE`` into ``where`` (once more after ``apt-get update`` when it fails)."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise FactoryError("fetching the wallpaper photos needs Debian's apt-get and dpkg-deb; copy the photos "
                           f"into {cache_dir()} by hand or use --images DIR")
    proc = _run(["apt-get", "download", "-q", package], where)
    if proc.returncode != 0:
        sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
        _run([*sudo, "apt-get", "update", "-q"], where)
        proc = _run(["apt-get", "download", "-q", package], where)
    debs = sorted(where.glob(f"{package}_*.deb"))
    if proc.returncode != 0 or not debs:
        raise FactoryError(f"apt-get download {package} failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
    return debs[-1]


def fetch_wallpapers(folder: Path | None = None, log: Callable[[str], None] = print) -> list[PhotoFile]:
    """Fetch the wallpaper packages that still have missing photos and keep only those photos (each copied
    atomically); returns every wallpaper photo now in the cache."""
    folder = folder or cache_dir()
    for package, photos in WALLPAPER_PHOTOS.items():
        missing = {n: p for n, p in photos.items() if not (folder / package / f"{n}.jpg").is_file()}
        if not missing:
            continue
        log(f"photos: fetching {package} ({len(missing)} photos) with apt-get download")
        with tempfile.TemporaryDirectory(prefix="photos-") as tmp:
            tmp = Path(tmp)
            deb = _download(package, tmp)
            proc = _run(["dpkg-deb", "-x", str(deb), str(tmp / "x")], tmp)
            if proc.returncode != 0:
                raise FactoryError(f"dpkg-deb -x {deb.name} failed: {proc.stderr.strip()[-300:]}")
            (folder / package).mkdir(parents=True, exist_ok=True)
            for name, inner in missing.items():
                src = tmp / "x" / inner
                if not src.is_file():
                    raise FactoryError(f"{deb.name} has no {inner}; the package changed, update WALLPAPER_PHOTOS")
                _store(src, folder / package / f"{name}.jpg")
    return wallpaper_photos(folder)


def _store(src: Path, dst: Path) -> None:
    """``src`` at most ``MAX_SIDE`` px on its longer side, as a JPEG (quality 95), written atomically."""
    import cv2

    from factory.core.atomic import atomic_write_bytes

    bgr = cv2.imread(str(src), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FactoryError(f"{src}: not a readable photo")
    scale = MAX_SIDE / max(bgr.shape[:2])
    if scale < 1:
        bgr = cv2.resize(bgr, (round(bgr.shape[1] * scale), round(bgr.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise FactoryError(f"{src}: JPEG encoding failed")
    atomic_write_bytes(dst, buf.tobytes())
