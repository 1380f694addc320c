"""Which concepts get a screen: the waves ``factory.data.screen_fit`` fits to each concept's training pairs.

``factory finetune --screen auto`` (the default) gives the student position channels only when the fit finds a fixed
screen in the teacher's outputs; a false find costs a colour or painterly concept nothing but a few zero weights, a
missed one leaves a halftone unlearnable. This lists the fit for every validation and test concept of the protocol
(the protocol's pairs: 160 at 128 px, data seed 0; the fit reads the train split only), with each peak's contrast.
Writes ``bench/results/screen_fit.{json,md}``.

    python bench/screen_fit.py          # ~5 min (teacher pairs for 14 concepts)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from concepts.cards import find_card
from factory.core.workspace import Workspace
from factory.data.card_pairs import PhotoCache, TeacherCache, make_pairs
from factory.evaluation.protocol import DATA_SEED, PAIRS, SIZE, concept_split
from factory.lora.finetune import fitted_screen
from factory.lora.pair_selection import train_ids

from common import log, provenance, write_results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", type=Path, default=Path("bench/work/screen-fit"))
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args()
    split = concept_split()
    ws = Workspace(args.workspace)
    teachers, photos = TeacherCache(), PhotoCache()
    rows = []
    for kind in ("validation", "test"):
        for group in ("colour", "structural"):
            for concept in split.of(kind, group):
                make_pairs(ws, find_card(concept), PAIRS, SIZE, DATA_SEED, teachers=teachers, photos=photos)
                screen = fitted_screen(ws.data(concept), train_ids(ws.data(concept)))
                rows.append({"concept": concept, "split": kind, "group": group,
                             "screen_waves": screen["screen_waves"] if screen else None})
                log(f"{concept} ({kind}, {group}): {rows[-1]['screen_waves']}")
    r = {**provenance("screen_fit.py"), "pairs": PAIRS, "size": SIZE, "data_seed": DATA_SEED, "rows": rows}
    lines = ["# Which concepts get a screen", "",
             f"`{r['command']}` ({r['date']}). The waves `factory.data.screen_fit` fits to each concept's training "
             f"pairs ({PAIRS} pairs at {SIZE} px, data seed {DATA_SEED}; train split): what `--screen auto` gives the "
             "student position channels for.", "",
             "| concept | split | group | screen waves [fy, fx] (cycles per pixel) |", "| --- | --- | --- | --- |"]
    lines += [f"| {x['concept']} | {x['split']} | {x['group']} | {x['screen_waves'] or 'none'} |" for x in rows]
    log(f"-> {write_results(args.out, 'screen_fit', False, r, chr(10).join(lines) + chr(10))}")


if __name__ == "__main__":
    main()
