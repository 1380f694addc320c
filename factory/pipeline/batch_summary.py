"""A batch's summary: ``reports/batch.json``, ``reports/batch.html`` and the mobile app's ``editors/manifest.json``."""

from __future__ import annotations

import os
from typing import Any

from factory.core.atomic import atomic_write_json, atomic_write_text
from factory.core.workspace import Workspace
from factory.pipeline.manifest import MANIFEST, write_manifest
from factory.pipeline.templates import render


def batch_html(ws: Workspace, records: list[dict], meta: dict) -> str:
    """``templates/batch.html.j2``: one row per concept (status, time, quality, size, links, error)."""
    rows = []
    for r in records:
        q = r.get("quality", {})
        ed, ident = q.get("editor_int8") or q.get("editor_fp32"), q.get("identity")
        size = r.get("sizes", {}).get("editor.int8.onnx")
        done = r.get("status") == "done"
        rows.append(
            {
                "name": r.get("concept") or r["target"],
                "status": r.get("status", "?"),
                "seconds": f"{r['seconds']:.0f}" if "seconds" in r else "",
                "psnr": f"{ed['psnr']:.2f}" if ed else "",
                "identity": f"{ident['psnr']:.2f}" if ident else "",
                "size": f"{size / 1e6:.2f} MB" if size else "",
                "report": os.path.relpath(r["report"], ws.reports) if done else None,
                "editor": os.path.relpath(r["editor"], ws.reports) if done else None,
                "error": r.get("error", ""),
            }
        )
    return render(
        "batch.html.j2",
        rows=rows,
        done=sum(r.get("status") == "done" for r in records),
        failed=sum(r.get("status") == "failed" for r in records),
        executor=meta["executor"],
        workers=meta["workers"],
        wall_seconds=meta.get("wall_seconds", 0),
        run_args=" ".join(meta.get("run_args", [])),
        manifest=str(ws.editor(MANIFEST)),
    )


def write_summary(ws: Workspace, records: list[dict], meta: dict) -> dict[str, Any]:
    summary = {
        **meta,
        "done": sum(r.get("status") == "done" for r in records),
        "failed": sum(r.get("status") == "failed" for r in records),
        "concepts": records,
        "report": str(ws.reports / "batch.html"),
        "manifest": str(ws.editor(MANIFEST)),
    }
    atomic_write_json(ws.reports / "batch.json", summary)
    atomic_write_text(ws.reports / "batch.html", batch_html(ws, records, meta))
    write_manifest(ws)  # every editor installed in the workspace, this batch's and any exported before
    return summary
