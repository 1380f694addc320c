"""A batch's summary: ``reports/batch.json``, ``reports/batch.html`` and the mobile app's ``editors/manifest.json``."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

from factory.atomic import atomic_write_json, atomic_write_text
from factory.pair_store import sha256_file
from factory.workspace import Workspace

MANIFEST = "manifest.json"
#: the files an app ships, in the order it prefers them
APP_FILES = ("editor.ort", "editor.int8.ort", "editor.onnx", "editor.int8.onnx")


def app_manifest(ws: Workspace, records: list[dict]) -> dict[str, Any]:
    """Every finished editor with its name, instruction, input contract and files (bytes, sha256)."""
    import json

    editors = []
    for r in records:
        if r.get("status") != "done":
            continue
        folder = Path(r["editor"])
        card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
        files = {name: {"path": os.path.relpath(folder / name, ws.root / "editors"), "bytes": (folder / name).stat().st_size,
                        "sha256": sha256_file(folder / name)}
                 for name in APP_FILES if (folder / name).is_file()}
        editors.append({"name": r["concept"], "instruction": card["instruction"], "input": card["input"],
                        "output": card["output"], "files": files})
    return {"format": "editfactory-editors/1", "editors": editors}


def _cell(value: Any) -> str:
    return f"<td>{value}</td>"


def batch_html(ws: Workspace, records: list[dict], meta: dict) -> str:
    rows = ["<tr><th>concept</th><th>status</th><th>seconds</th><th>editor PSNR (int8)</th><th>identity PSNR</th>"
            "<th>editor.int8.onnx</th><th>report</th><th>error</th></tr>"]
    for r in records:
        q = r.get("quality", {})
        ed, ident = q.get("editor_int8") or q.get("editor_fp32"), q.get("identity")
        size = r.get("sizes", {}).get("editor.int8.onnx")
        report = (f'<a href="{html.escape(os.path.relpath(r["report"], ws.reports))}">report</a> · '
                  f'<a href="{html.escape(os.path.relpath(r["editor"], ws.reports))}">editor</a>'
                  if r.get("status") == "done" else "")
        name = r.get("concept") or r["target"]
        rows.append("<tr>" + _cell(html.escape(name)) + _cell(html.escape(r.get("status", "?")))
                    + _cell(f"{r['seconds']:.0f}" if "seconds" in r else "")
                    + _cell(f"{ed['psnr']:.2f}" if ed else "") + _cell(f"{ident['psnr']:.2f}" if ident else "")
                    + _cell(f"{size / 1e6:.2f} MB" if size else "") + _cell(report)
                    + _cell(html.escape(r.get("error", ""))) + "</tr>")
    done = sum(r.get("status") == "done" for r in records)
    failed = sum(r.get("status") == "failed" for r in records)
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>editfactory batch</title>"
            "<style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ddd;padding:.3em .6em}th{background:#f4f4f4}</style></head><body>"
            f"<h1>Batch: {done} done, {failed} failed, {len(records)} in all</h1>"
            f"<p>{html.escape(meta['executor'])} executor, {meta['workers']} worker(s), "
            f"{meta.get('wall_seconds', 0):.0f} s wall time; run options: "
            f"<code>{html.escape(' '.join(meta.get('run_args', [])) or '(defaults)')}</code>; "
            f"app manifest: <code>{html.escape(str(ws.editor(MANIFEST)))}</code></p>"
            "<table>" + "".join(rows) + "</table></body></html>\n")


def write_summary(ws: Workspace, records: list[dict], meta: dict) -> dict[str, Any]:
    summary = {**meta, "done": sum(r.get("status") == "done" for r in records),
               "failed": sum(r.get("status") == "failed" for r in records), "concepts": records,
               "report": str(ws.reports / "batch.html"), "manifest": str(ws.editor(MANIFEST))}
    atomic_write_json(ws.reports / "batch.json", summary)
    atomic_write_text(ws.reports / "batch.html", batch_html(ws, records, meta))
    atomic_write_json(ws.editor(MANIFEST), app_manifest(ws, records))
    return summary
