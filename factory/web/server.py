"""``factory web``: a small HTTP server for the browser editor (standard library only).

Serves the URL layout of ``factory.web.site`` from the workspace, with the headers that make the page
cross-origin isolated (COOP ``same-origin`` + COEP ``require-corp``), which onnxruntime-web needs for
multi-threaded WebAssembly (SharedArrayBuffer). Model and JSON files are revalidated on every load
(an editor exported while the server runs shows up on reload); the vendor files are cached.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import socket
import sys
import urllib.parse
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from factory.core.errors import FactoryError
from factory.core.workspace import Workspace
from factory.web.site import current_manifest, packs_index, resolve
from factory.web.vendor import check_vendor

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".png": "image/png",
}
ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
DEFAULT_PORT = 8765


def _handler(ws: Workspace, log_errors: Callable[[str], None]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "editfactory-web"
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._serve(body=True)

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def _serve(self, body: bool) -> None:
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
            try:
                target = resolve(ws, path)
            except OSError:
                target = None
            if target is None:
                return self._send_error(HTTPStatus.NOT_FOUND, f"not found: {path}")
            name = path if isinstance(target, bytes) else target.name
            headers = {"Content-Type": CONTENT_TYPES.get(Path(name).suffix, "application/octet-stream"),
                       **ISOLATION_HEADERS}
            if isinstance(target, bytes):
                return self._send(HTTPStatus.OK, headers | {"Cache-Control": "no-cache"}, target, body)
            try:
                st = target.stat()
                fh = open(target, "rb")  # noqa: SIM115 (closed below, after streaming)
            except OSError:
                return self._send_error(HTTPStatus.NOT_FOUND, f"not found: {path}")
            with fh:
                etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
                cache = "public, max-age=3600" if path.startswith("/vendor/") else "no-cache"
                headers |= {"ETag": etag, "Cache-Control": cache}
                if self.headers.get("If-None-Match") == etag:
                    return self._send(HTTPStatus.NOT_MODIFIED, headers, b"", False)
                self.send_response(HTTPStatus.OK)
                for k, v in (headers | {"Content-Length": str(st.st_size)}).items():
                    self.send_header(k, v)
                self.end_headers()
                if body:
                    shutil.copyfileobj(fh, self.wfile, 1 << 20)

        def _send(self, status: HTTPStatus, headers: dict[str, str], data: bytes, body: bool) -> None:
            self.send_response(status)
            for k, v in (headers | {"Content-Length": str(len(data))}).items():
                self.send_header(k, v)
            self.end_headers()
            if body and data:
                self.wfile.write(data)

        def _send_error(self, status: HTTPStatus, message: str) -> None:
            log_errors(f"{status.value} {self.command} {self.path}")
            self._send(status, {"Content-Type": "text/plain; charset=utf-8", **ISOLATION_HEADERS},
                       (message + "\n").encode(), self.command != "HEAD")

        def log_message(self, format: str, *args) -> None:
            pass  # quiet: only errors are logged (by _send_error)

        def handle(self) -> None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the browser left mid-response
                super().handle()

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    manifest: dict


class _Server6(_Server):
    address_family = socket.AF_INET6


def make_server(ws: Workspace, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                log_errors: Callable[[str], None] | None = None) -> ThreadingHTTPServer:
    """A bound (not yet serving) server for ``ws``; FactoryError when the vendor files are missing or the port is
    taken. ``editors/manifest.json`` is rebuilt from the editor folders first."""
    check_vendor()
    manifest = current_manifest(ws)
    handler = _handler(ws, log_errors or (lambda m: print(m, file=sys.stderr, flush=True)))
    try:
        server = (_Server6 if ":" in host else _Server)((host, port), handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise FactoryError(f"port {port} on {host} is already in use (another `factory web` or another "
                               "server?): choose a free one with --port N") from None
        if exc.errno == errno.EACCES:
            raise FactoryError(f"not allowed to listen on {host}:{port} (ports below 1024 need root): "
                               "choose one above 1024 with --port N") from None
        if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
            raise FactoryError(f"--host {host}: not an address of this machine (try 127.0.0.1)") from None
        raise
    server.manifest = manifest
    return server


def url_of(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in str(host) else host
    return f"http://{shown}:{port}/"


def serve(ws: Workspace, host: str = "127.0.0.1", port: int = DEFAULT_PORT, log=print) -> None:
    """Serve until Ctrl-C, printing the URL (and a line on what the page will find) first."""
    server = make_server(ws, host, port)
    n_editors, n_packs = len(server.manifest["editors"]), len(packs_index(ws)["packs"])
    log(f"factory web: {n_editors} editor(s), {n_packs} pack(s) from {ws.root} at {url_of(server)} "
        "(Ctrl-C stops)")
    if not n_editors and not n_packs:
        log(f"  no editors in {ws.root / 'editors'} yet: make one with `factory run \"an instruction\"` or "
            "`factory export CONCEPT`, then reload the page")
    if host not in ("127.0.0.1", "localhost", "::1"):
        log("  note: browsers give the camera and WebAssembly threads only to https pages or to localhost; "
            "on another address the page runs without them")
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        log("factory web: stopped")
    finally:
        server.server_close()
