"""The concept report: one self-contained HTML page (images inlined as data URIs, no scripts, no links out).

``build_report(workspace, concept)`` reads what the stages wrote (``runs/<concept>/state.json`` and
``eval.json``, ``loras/<concept>/metrics.json`` and ``curve.png``, ``editors/<concept>/card.json``)
and renders ``templates/report.html.j2`` into ``reports/<concept>.html``: a grid of held-out source |
teacher | editor images, the training curve, quality against the identity baseline, adapter and
editor sizes, latency, the stages' times and the files produced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from factory.core.atomic import atomic_write_text
from factory.core.errors import FactoryError
from factory.core.files import read_json
from factory.core.workspace import Workspace
from factory.pipeline.run_state import STAGES, run_dir, trained_dir
from factory.pipeline.templates import data_uri, render


def _mb(n: int | float) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


#: (key, column title, format) of the quality table; structural metrics say what pixel metrics miss
QUALITY_COLUMNS = (("psnr", "PSNR dB", "%.2f"), ("psnr_quarter", "PSNR at 1/4 res", "%.2f"), ("ssim", "SSIM", "%.3f"),
                   ("haarpsi", "HaarPSI", "%.3f"), ("fsim", "FSIM", "%.3f"), ("gmsd", "GMSD (lower is better)", "%.3f"))


def _quality(ev: dict, metrics: dict | None) -> list[dict[str, Any]]:
    ident = ev["identity"]
    if ident is None:  # --zero-shot with no teacher pairs: nothing to measure against
        return []
    rows = [{"label": "identity (the source unchanged)", "values": ident, "gain": None}]
    for key, label in (("editor_fp32", "editor, fp32 ONNX"), ("editor_int8", "editor, int8 ONNX")):
        if key in ev:
            rows.append({"label": label, "values": ev[key], "gain": ev[key]["psnr"] - ident["psnr"]})
    start = (metrics or {}).get("test", {}).get("init_adapter")
    if start:
        rows.append({"label": f"starting adapter ({start['init']}), no training (torch, {start['size']} px)",
                     "values": start, "gain": start["psnr"] - ident["psnr"]})
    readout = (metrics or {}).get("test", {}).get("readout_start")
    if start and readout:
        rows.append({"label": f"readout start: head solved on the training pairs (torch, {start['size']} px)",
                     "values": readout, "gain": readout["psnr"] - ident["psnr"]})
    zero = (metrics or {}).get("test", {}).get("base_zero_shot")
    if zero:
        rows.append({"label": "base without the LoRA (text only)", "values": zero,
                     "gain": zero["psnr"] - ident["psnr"]})
    return rows


def _sizes(metrics: dict | None, card: dict | None, lora_dir: Path) -> list[tuple[str, str]]:
    rows = []
    if metrics and "adapter_params" in metrics:
        rows.append(
            (
                "LoRA adapter parameters",
                f"{metrics['adapter_params']:,} ({100 * metrics['adapter_fraction']:.2f}% "
                f"of the generator's {metrics['generator_params']:,})",
            )
        )
        w = lora_dir / "adapter_model.safetensors"
        if w.is_file():
            rows.append(("adapter_model.safetensors", _mb(w.stat().st_size)))
    if card:
        rows += [(name, _mb(n)) for name, n in card["files"].items()]
        if card.get("int8_size_ratio"):
            rows.append(("int8 / fp32 size", f"{card['int8_size_ratio']:.2f}"))
    return rows


def _latency(card: dict | None) -> dict[str, Any] | None:
    if not card:
        return None
    lat = card["latency_ms"]
    mobile = card["checks"].get("mobile", {})
    return {
        "size": lat["size"],
        "threads": lat.get("threads"),
        "load": lat.get("load_average_1min"),
        "rows": [
            (k, lat[k]["median_ms"], lat[k].get("p90_ms", float("nan"))) for k in ("fp32", "int8", "fp16") if k in lat
        ],
        "mobile": "NNAPI and CoreML take the fp32 graph whole"
        if mobile.get("passed")
        else "some nodes would fall back to the CPU on NNAPI/CoreML (see card.json)",
    }


def build_report(ws: Workspace, concept: str) -> Path:
    """Write ``reports/<concept>.html`` from the run's files; returns its path."""
    folder = run_dir(ws, concept)
    ev = read_json(folder / "eval.json")
    if ev is None:
        raise FactoryError(f"no evaluation for '{concept}' yet ({folder / 'eval.json'}); run `factory run {concept}`")
    state = read_json(folder / "state.json") or {"stages": {}}
    trained = trained_dir(ws, concept)
    metrics = read_json(trained / "metrics.json")
    card = read_json(ws.editor(concept) / "card.json")
    curve = trained / "curve.png"
    files = [ws.editor(concept) / n for n in (card or {}).get("files", {})] + [
        trained / n for n in ("adapter_config.json", "adapter_model.safetensors", "config.json",
                              "diffusion_pytorch_model.safetensors", "metrics.json", "curve.csv")
    ]
    training = None
    if metrics:
        training = {
            "steps": metrics["training"]["steps"],
            "seconds": metrics["training"]["seconds"],
            "pairs": len(metrics["pairs"]["train"]),
            "base": metrics["base"],
            "zero_shot": bool(metrics.get("zero_shot")),
        }
    page = render(
        "report.html.j2",
        concept=concept,
        instruction=(card or metrics or {}).get("instruction", ""),
        ev=ev,
        grid=[[(label, data_uri(Path(path))) for label, path in row] for row in ev.get("grid") or []],
        quality=_quality(ev, metrics),
        columns=QUALITY_COLUMNS,
        learned=ev.get("learned"),
        short_of=[next((label for key, label, _ in QUALITY_COLUMNS if key == m), m) for m in ev.get("short_of") or []],
        init=(state["stages"].get("init") or {}).get("info"),
        training=training,
        curve=data_uri(curve) if curve.is_file() else None,
        sizes=_sizes(metrics, card, trained),
        latency=_latency(card),
        stages=[
            (n, state["stages"][n]["seconds"], state["stages"][n].get("finished", ""))
            for n in STAGES
            if n in state["stages"]
        ],
        files=[str(p) for p in files if p.exists()],
    )
    out = ws.reports / f"{concept}.html"
    atomic_write_text(out, page)
    return out
