"""``factory photos fetch|list``: the default photo set (scikit-image, scikit-learn, Debian wallpapers)."""

from __future__ import annotations

import click


@click.group("photos")
def photos_group() -> None:
    """The default source photos and their fixed train/test split.

    \b
    scikit-image's and scikit-learn's sample photos ship in their wheels; the photographs of two
    Debian wallpaper packages are fetched once (apt-get download + dpkg-deb -x, nothing installed)
    into the photo cache ($FACTORY_PHOTO_CACHE, default ~/.cache/editfactory/photos).
    """


@photos_group.command("fetch")
def fetch_cmd() -> None:
    """Fetch the wallpaper photos that are not in the cache yet."""
    from factory.data.photo_sources import cache_dir, fetch_wallpapers

    found = fetch_wallpapers(log=lambda m: click.echo(m, err=True))
    click.echo(f"photos: {len(found)} wallpaper photos in {cache_dir()}")


@photos_group.command("list")
def list_cmd() -> None:
    """List the default photo set: id, split, near-duplicate group and size."""
    from factory.data.photos import default_photos

    photos = default_photos()
    for p in photos.photos:
        group = f"  (group {p.group})" if p.group != p.name else ""
        click.echo(f"{p.name:28s} {p.split:5s} {p.rgb.shape[1]}x{p.rgb.shape[0]}{group}")
    click.echo(f"{len(photos.split('train'))} train, {len(photos.split('test'))} test photos")


def register(cli: click.Group) -> None:
    cli.add_command(photos_group)
