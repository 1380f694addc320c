"""``factory web``: the workspace's editors in the browser (onnxruntime-web), served or written as a static folder."""

from __future__ import annotations

from pathlib import Path

import click

from factory.pipeline.session import Session


@click.command("web")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to listen on (0: any free port, printed).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Browsers give the camera and WebAssembly threads only to localhost "
                   "or https pages.")
@click.option("--out", type=click.Path(file_okay=True, path_type=Path),
              help="Write the page, onnxruntime-web and the editors' files (and packs) to this new folder for any "
                   "web server instead of serving.")
@click.pass_obj
def web(session: Session, port: int, host: str, out: Path | None) -> None:
    """Serve a page that runs the workspace's editors in the browser.

    \b
    The page lists editors/manifest.json (rebuilt from editors/*/card.json) and the filter packs in
    packs/*/pack.json, and runs them with onnxruntime-web (WebAssembly; installed by `make web`, never
    from a CDN): pick or drop a photo to see it before/after, switch filters, or start the webcam for
    a live preview with its frame rate. Photos are resized so each side is a multiple of 16 and the
    longer one at most the page's "max side".
    """
    if out is not None:
        from factory.web.site import write_site

        r = write_site(session.workspace, out)
        click.echo(f"web: {r['editors']} editor(s) ({r['files']} files), {r['packs']} pack(s), onnxruntime-web "
                   f"{r['onnxruntime_web']} -> {r['out']} (serve it with any web server, e.g. "
                   f"`python -m http.server -d {r['out']}`; COOP/COEP headers give it WebAssembly threads)")
        return
    from factory.web.server import serve

    serve(session.workspace, host=host, port=port, log=lambda m: click.echo(m))


def register(cli: click.Group) -> None:
    cli.add_command(web)
