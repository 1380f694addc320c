"""A closed-form colour calibration of a fine-tuned editor's output: how much of its error is one global colour map?

For issue 15's colour runs that flatten below scratch's plateau. Per editor (a workspace ``factory run`` made before
the output-curves stage: ``editors/<concept>``, ``data/<concept>``), the editor (fp32, onnxruntime) runs on the
concept's training pairs' sources, and each rule (``factory.lora.output_calibration.solve_output_curves`` with the
kinds of curves it may try: ``output``, nine curves of the editor's output; ``output+photo``, eighteen, of the
output and of the photo; ``photo``, nine of the photo alone, the editor's output unused) decides on the training
pairs alone whether and which curves to keep (fitted on the pairs of three quarters of the training photos, scored
on the other quarter's); the kept curves are applied to the editor's output on the test pairs
(``base_gan.output_curves``, what an export carries). PSNR (dB) on the test pairs at the pairs' size. Seconds: the
editor on the training pairs plus the rule's fits (what a run is charged). Run it on validation concepts.

    python bench/output_calibration.py --workspaces bench/work/fullsize-curves-validation/ws-autumn,... \
        --name output-calibration-validation-photo
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from common import REPO, log, provenance, provenance_line, read_pairs, write_results


def _tensors(images: list[np.ndarray]):
    import torch

    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


def _rule_psnr(solved: dict, test_out, test_src, test_dst: list[np.ndarray]) -> float:
    """Mean test PSNR of the editor's output as the rule leaves it (through the kept curves, else raw)."""
    from base_gan.output_curves import OutputCurves
    from factory.core.images import psnr_u8
    from factory.data.dataset import to_uint8

    out = OutputCurves(solved["knots"])(test_out, test_src) if solved["kept"] else test_out
    return statistics.fmean(psnr_u8(to_uint8(o), t) for o, t in zip(out, test_dst))


def parse_rule(rule: str) -> tuple[tuple[str, ...], int]:
    """A ``--rules`` entry, the kinds ','-separated and optionally ``/folds``: (kinds, folds)."""
    from factory.lora.output_calibration import FOLDS

    kinds, _, folds = rule.partition("/")
    return tuple(kinds.split(",")), int(folds) if folds else FOLDS


def measure(ws: Path, concept: str, rules: list[str]) -> dict:
    from factory.core.images import psnr_u8
    from factory.lora.output_calibration import solve_output_curves
    from factory.runtime.editor import Editor

    data = ws / "data" / concept
    editor = Editor(ws / "editors" / concept, threads=2)
    (train_src, train_dst, groups), (test_src, test_dst, _) = read_pairs(data, "train"), read_pairs(data, "test")
    t0 = time.perf_counter()
    train_out = editor.edit(train_src, path="tiled")
    edit_seconds = time.perf_counter() - t0
    test_out = editor.edit(test_src, path="tiled")
    out_t, src_t, dst_t = _tensors(train_out), _tensors(train_src), _tensors(train_dst)
    test_out_t, test_src_t = _tensors(test_out), _tensors(test_src)
    row = {"concept": concept, "workspace": str(ws.relative_to(REPO)) if ws.is_relative_to(REPO) else str(ws),
           "train_pairs": len(train_src), "test_pairs": len(test_src),
           "identity_db": round(statistics.fmean(psnr_u8(s, t) for s, t in zip(test_src, test_dst)), 2),
           "raw_db": round(statistics.fmean(psnr_u8(o, t) for o, t in zip(test_out, test_dst)), 2), "rules": {}}
    for rule in rules:
        inputs, folds = parse_rule(rule)
        solved = solve_output_curves(out_t, dst_t, groups, photos=src_t, inputs=inputs, folds=folds)
        row["rules"][" or ".join(inputs) + (f", {folds} folds" if "/" in rule else "")] = {
            "kept": solved["inputs"] if solved["kept"] else None, "held_out": solved["held_out"],
            "test_db": round(_rule_psnr(solved, test_out_t, test_src_t, test_dst), 2),
            "seconds": round(edit_seconds + solved["seconds"], 2)}
    log(f"{concept}: {row}")
    return row


def render(result: dict) -> str:
    rules = list(result["editors"][0]["rules"])
    lines = ["# A fine-tuned editor's output, calibrated by global colour curves "
             f"({result.get('name', 'output-calibration')})", "",
             f"{provenance_line(result)}. PSNR (dB) on each concept's test pairs at the pairs' size: the editor's "
             "output (*raw*) and the output as each rule leaves it (`factory.lora.output_calibration."
             "solve_output_curves`: each kind of curves it may try is fitted on the pairs of 3/4 of the training "
             "photos and scored on the other 1/4's, or, with *N folds*, on each of N quarters in turn, pooled; the "
             "best kind, when it beats the raw output there, is fitted on "
             "every training pair and applied). Kinds: *output* (nine curves of the editor's output), "
             "*output+photo* (eighteen: of its output and of the photo). Seconds: the editor on the training pairs "
             "and the rule's fits.", "",
             "| concept | workspace | pairs (train / test) | identity | raw | "
             + " | ".join(f"rule {r}: kept | test" for r in rules) + " | seconds |",
             "| --- | --- | --- | ---: | ---: | " + "--- | ---: | " * len(rules) + "---: |"]
    for r in result["editors"]:
        cells = " | ".join(f"{x['kept'] or 'no'} | {x['test_db']:.2f}" for x in r["rules"].values())
        lines.append(f"| {r['concept']} | `{r['workspace']}` | {r['train_pairs']} / {r['test_pairs']} | "
                     f"{r['identity_db']:.2f} | {r['raw_db']:.2f} | {cells} | "
                     f"{max(x['seconds'] for x in r['rules'].values()):.2f} |")
    lines.append("")
    for rule in rules:
        gain = [r["rules"][rule]["test_db"] - r["raw_db"] for r in result["editors"]]
        lines.append(f"Rule {rule} minus raw over {len(gain)} editors: mean {statistics.fmean(gain):+.2f} dB, "
                     f"min {min(gain):+.2f}, max {max(gain):+.2f}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspaces", required=True, help="comma-separated workspaces (editors/<concept>, data/)")
    ap.add_argument("--name", default="output-calibration-validation")
    ap.add_argument("--rules", default="output;output,output+photo",
                    help="the rules to compare, ';'-separated, each the kinds of curves it may try, ','-separated, "
                         "and optionally /N: the quarters of the training photos held out in turn (default 1)")
    args = ap.parse_args()
    rules = args.rules.split(";")
    editors = [measure(ws, c.name, rules) for ws in (Path(w).resolve() for w in args.workspaces.split(","))
               for c in sorted((ws / "editors").iterdir()) if (c / "card.json").is_file()]
    result = {**provenance("output_calibration.py"), "name": args.name, "editors": editors}
    log(f"wrote {write_results(REPO / 'bench' / 'results', args.name, False, result, render(result))}")


if __name__ == "__main__":
    main()
