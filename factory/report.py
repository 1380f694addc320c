"""The concept report: one self-contained HTML page (images inlined as data URIs, no scripts, no links out).

``build_report(workspace, concept)`` reads what the stages wrote (``runs/<concept>/state.json`` and
``eval.json``, ``loras/<concept>/metrics.json`` and ``curve.png``, ``editors/<concept>/card.json``)
and writes ``reports/<concept>.html``: a grid of held-out source | teacher | editor images, the
training curve, quality against the identity baseline, adapter and editor sizes, latency, the
stages' times and the files produced.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from factory.atomic import atomic_write_text
from factory.errors import FactoryError
from factory.workspace import Workspace

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{margin-bottom:.2em}.sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:.6em 0 1.4em}td,th{border:1px solid #ddd;padding:.35em .7em;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}
.grid td{padding:4px;text-align:center;vertical-align:top}.grid img{width:200px;height:200px;image-rendering:auto}
code{background:#f4f4f4;padding:0 .25em}.good{color:#17692b;font-weight:600}.bad{color:#a4161a;font-weight:600}
"""


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON file's content, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def data_uri(path: Path) -> str:
    """A PNG file as a data: URI."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _img(path: Path, alt: str, width: int | None = None) -> str:
    size = f' width="{width}"' if width else ""
    return f'<img src="{data_uri(path)}" alt="{html.escape(alt)}"{size}>'


def _mb(n: int | float) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _row(cells: list[Any], head: bool = False) -> str:
    tag = "th" if head else "td"
    out = []
    for i, c in enumerate(cells):
        cls = ' class="l"' if i == 0 else ""
        out.append(f"<{tag}{cls}>{c}</{tag}>")
    return "<tr>" + "".join(out) + "</tr>"


def _quality_table(ev: dict, metrics: dict | None) -> str:
    rows = [_row(["", "PSNR (dB)", "SSIM", "vs identity (dB)"], head=True)]
    ident = ev["identity"]
    rows.append(_row(["identity (the source unchanged)", f"{ident['psnr']:.2f}", f"{ident['ssim']:.3f}", "0.00"]))
    for key, label in (("editor_fp32", "editor, fp32 ONNX"), ("editor_int8", "editor, int8 ONNX")):
        if key in ev:
            q = ev[key]
            gain = q["psnr"] - ident["psnr"]
            cls = "good" if gain > 0 else "bad"
            rows.append(_row([label, f"{q['psnr']:.2f}", f"{q['ssim']:.3f}", f'<span class="{cls}">{gain:+.2f}</span>']))
    if metrics:
        bz = metrics["test"].get("base_zero_shot")
        if bz:
            rows.append(_row(["base without the LoRA (text only)", f"{bz['psnr']:.2f}", f"{bz['ssim']:.3f}",
                              f"{bz['psnr'] - ident['psnr']:+.2f}"]))
    return "<table>" + "".join(rows) + "</table>"


def _sizes_table(metrics: dict | None, card: dict | None, lora_dir: Path) -> str:
    rows = [_row(["what", "size"], head=True)]
    if metrics and "adapter_params" in metrics:
        rows.append(_row(["LoRA adapter parameters", f"{metrics['adapter_params']:,} "
                          f"({100 * metrics['adapter_fraction']:.2f}% of the generator's "
                          f"{metrics['generator_params']:,})"]))
        w = lora_dir / "adapter_model.safetensors"
        if w.is_file():
            rows.append(_row(["adapter_model.safetensors", _mb(w.stat().st_size)]))
    if card:
        for name, n in card["files"].items():
            rows.append(_row([html.escape(name), _mb(n)]))
        if card.get("int8_size_ratio"):
            rows.append(_row(["int8 / fp32 size", f"{card['int8_size_ratio']:.2f}"]))
    return "<table>" + "".join(rows) + "</table>"


def _latency_table(card: dict | None) -> str:
    if not card:
        return "<p>No editor exported yet.</p>"
    lat = card["latency_ms"]
    rows = [_row(["editor", f"median ms at {lat['size']}x{lat['size']}", "p90 ms"], head=True)]
    for k in ("fp32", "int8", "fp16"):
        if k in lat:
            rows.append(_row([k, f"{lat[k]['median_ms']:.1f}", f"{lat[k].get('p90_ms', float('nan')):.1f}"]))
    note = (f"onnxruntime CPU, batch 1, {lat.get('threads')} thread(s), 1-minute load average "
            f"{lat.get('load_average_1min')} when measured.")
    mobile = card["checks"].get("mobile", {})
    whole = "NNAPI and CoreML take the fp32 graph whole" if mobile.get("passed") else \
        "some nodes would fall back to the CPU on NNAPI/CoreML (see card.json)"
    return "<table>" + "".join(rows) + f"</table><p>{html.escape(note)} Mobile check: {html.escape(whole)}.</p>"


def _stages_table(state: dict | None) -> str:
    if not state:
        return ""
    rows = [_row(["stage", "seconds", "finished"], head=True)]
    from factory.run import STAGES

    for name in STAGES:
        rec = state["stages"].get(name)
        if rec is None:
            continue
        rows.append(_row([name, f"{rec['seconds']:.1f}", html.escape(rec.get("finished", ""))]))
    return "<table>" + "".join(rows) + "</table>"


def _grid(ev: dict) -> str:
    rows = ev.get("grid") or []
    if not rows:
        return ""
    heads = [label for label, _ in rows[0]]
    out = ["<table class=\"grid\"><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in heads) + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{_img(Path(path), label)}</td>" for label, path in r) + "</tr>")
    return "".join(out) + "</table>"


def build_report(ws: Workspace, concept: str) -> Path:
    """Write ``reports/<concept>.html`` from the run's files; returns its path."""
    from factory.run import run_dir

    folder = run_dir(ws, concept)
    ev = read_json(folder / "eval.json")
    if ev is None:
        raise FactoryError(f"no evaluation for '{concept}' yet ({folder / 'eval.json'}); run `factory run {concept}`")
    state = read_json(folder / "state.json")
    metrics = read_json(ws.lora(concept) / "metrics.json")
    card = read_json(ws.editor(concept) / "card.json")
    instruction = (card or metrics or {}).get("instruction", "")
    parts = [f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>editfactory: "
             f"{html.escape(concept)}</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(concept)}</h1><p class=\"sub\">“{html.escape(instruction)}” · "
             f"{ev['test_pairs']} held-out test pairs at {ev['size']} px (photos never used for training)</p>"]

    parts.append("<h2>Held-out images: source | teacher | editor</h2>" + _grid(ev))
    parts.append("<h2>Quality against the teacher</h2>" + _quality_table(ev, metrics))

    parts.append("<h2>Training</h2>")
    init = ((state or {}).get("stages", {}).get("init") or {}).get("info", {})
    if init:
        parts.append(f"<p>Start: {html.escape(init.get('why', ''))}"
                     + (f" ({html.escape(init.get('weightgen', ''))}, {init['sample_seconds']:.2f} s)"
                        if init.get("sample_seconds") is not None else "") + ".</p>")
    if metrics:
        tr = metrics["training"]
        parts.append(f"<p>{tr['steps']} fine-tuning steps in {tr['seconds']:.0f} s on "
                     f"{len(metrics['pairs']['train'])} training pairs; base <code>{html.escape(metrics['base'])}</code>.</p>")
    curve = ws.lora(concept) / "curve.png"
    if curve.is_file():
        parts.append(_img(curve, "held-out PSNR against fine-tuning seconds"))

    parts.append("<h2>Sizes</h2>" + _sizes_table(metrics, card, ws.lora(concept)))
    parts.append("<h2>Latency</h2>" + _latency_table(card))
    parts.append("<h2>Stages</h2>" + _stages_table(state))
    files = [ws.editor(concept) / n for n in (card or {}).get("files", {})] + \
        [ws.lora(concept) / n for n in ("adapter_config.json", "adapter_model.safetensors", "metrics.json", "curve.csv")]
    parts.append("<h2>Files</h2><ul>" + "".join(f"<li><code>{html.escape(str(p))}</code></li>"
                                                 for p in files if p.exists()) + "</ul>")
    parts.append("</body></html>\n")
    out = ws.reports / f"{concept}.html"
    atomic_write_text(out, "\n".join(parts))
    return out
