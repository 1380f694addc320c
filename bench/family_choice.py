"""The ``--init auto`` start for family-recipe concepts, chosen on the family leave-out's validation draws.

A concept whose teacher is the concept family's own recipe for its text (a family concept, or a card that
``factory concepts new --teacher classic`` composed from a text the grammar reads) is the situation the family
leave-out measures: ``bench/accelerators.py --split none --holdout N --pool validation`` scores every start on
validation concepts left out of the weight generator. This script reads that pooled results file, takes the
start with the best mean PSNR against the teacher among those ``factory run --init`` can make (the rule of
``--record-choice`` for named concepts), and records it as the weight generator's ``family`` choice
(``weight_generator.init_choice``) for the base given here. Nothing is measured.

    python bench/family_choice.py --results \
        bench/results/accelerators/remade-1024-recipe-tokens/accelerators-holdout-new-validation-pooled.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from base_gan.models import BaseGAN
from factory.pipeline.assets import pretrained_base, pretrained_weightgen
from factory.pipeline.steps import INITS
from weight_generator.init_choice import write_family_choice

from common import log, provenance

#: the leave-out's start names -> the ``--init`` that makes the same adapter
AS_INIT = {"generated": "weightgen", "recipe+generated": "recipe+weightgen"}


def choose(result: dict) -> tuple[str, dict[str, float]]:
    """The best start by mean PSNR against the teacher (as an ``--init`` kind) and every eligible start's mean."""
    holdout = result["holdout"]
    if "validation" not in holdout["draw"]:
        raise SystemExit(f"{holdout['draw']}: not validation draws; choose on validation concepts only")
    means = {AS_INIT.get(s, s): round(v["mean"], 3) for s, v in holdout["summary"].items()
             if AS_INIT.get(s, s) in INITS}
    return max(means, key=means.get), means


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, required=True, help="a pooled validation leave-out results file")
    ap.add_argument("--base", type=Path, default=None, help="the base to record the choice for (default: shipped)")
    ap.add_argument("--weightgen", type=Path, default=None, help="its weight generator folder (default: shipped)")
    args = ap.parse_args()
    base_dir, wg_dir = args.base or pretrained_base(), args.weightgen or pretrained_weightgen()
    result = json.loads(args.results.read_text())
    init, means = choose(result)
    record = {**provenance("family_choice.py"), "results": str(args.results),
              # the base and generators it was measured with are named in the results file (build paths stay out
              # of shipped files)
              "measured_on": {"concepts": result["holdout"]["concepts"], "draw": result["holdout"]["draw"]},
              "validation_means": means}
    path = write_family_choice(wg_dir, init, BaseGAN.load(base_dir).sha256, record)
    log(f"recorded --init auto = {init} for family-recipe concepts in {path} ({init} {means[init]:.2f} dB; "
        + ", ".join(f"{k} {v:.2f}" for k, v in sorted(means.items(), key=lambda kv: -kv[1]) if k != init) + ")")


if __name__ == "__main__":
    main()
