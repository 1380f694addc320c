"""A procedural concept family over the classic recipe language, and its inverse (text -> recipe).

A *family concept* is a composition of one to three *family ops* (``FAMILY_OPS``: "warmer",
"desaturated", "vignette", "pencil sketch", ...), each at one of its levels (a little / plain /
strongly), applied in a fixed order (pre-filters, structure, colour and tone, vignette, grain).
``sample_concepts`` draws them with a seed and writes each instruction from its parameters with
varied phrasing ("make it a little warmer and strongly desaturated, with a soft vignette"), so the
text carries the edit. ``parse_instruction`` reads such a text back into its recipe; it also reads
what a person types within the same grammar ("make it warmer and add a strong vignette"), and says
why when a text is outside it.

Held out of training (``FamilyConcept.region``): concepts holding a pair of ops listed in
``HELD_OUT_PAIRS`` or an op at a level listed in ``HELD_OUT_LEVELS`` are "held-out" (for validation
and test); every other composition is "train".
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from typing import Any

from concepts.cards import ConceptCard
from factory.core.errors import FactoryError
from factory.core.workspace import Workspace
from factory.teachers.recipes import validate_recipe

# level words: 1 = a little, 2 = plain, 3 = strongly. A parsed chunk's level is 1 when it holds a word of
# LEVEL_WORDS[1], 3 when it holds one of LEVEL_WORDS[3], else 2; the phrase tables below only use these.
ADVERB = {1: ("a little", "slightly", "a bit"), 2: ("",), 3: ("much", "a lot", "far")}
PARTICIPLE = {1: ("slightly", "lightly", "a little"), 2: ("",), 3: ("strongly", "heavily", "very")}
ADJECTIVE = {1: ("subtle", "soft", "light"), 2: ("",), 3: ("strong", "heavy", "bold")}
FINENESS = {1: ("fine",), 2: ("",), 3: ("coarse", "chunky")}
LEVEL_WORDS = {
    1: (
        "a little",
        "slightly",
        "a bit",
        "lightly",
        "subtle",
        "subtly",
        "soft",
        "light",
        "fine",
        "a touch",
        "gentle",
        "gently",
        "mild",
        "mildly",
    ),
    3: (
        "much",
        "a lot",
        "far",
        "strongly",
        "heavily",
        "very",
        "strong",
        "heavy",
        "bold",
        "coarse",
        "chunky",
        "intense",
        "intensely",
        "dramatic",
        "dramatically",
        "extremely",
    ),
}
#: stages: the order family ops apply in, whatever the order of the words
STAGES = ("pre", "structure", "colour", "vignette", "grain")


@dataclass(frozen=True)
class Phrase:
    """One way to say a family op: ``kind`` "adj" (follows "make it"), "clause" (stands alone) or "with"
    (a noun phrase after "with"); ``text`` has ``{w}`` where the level word goes, taken from ``words``."""

    kind: str
    text: str
    words: dict[int, tuple[str, ...]]


@dataclass(frozen=True)
class FamilyOp:
    """A family op: the recipe steps of each level, how to recognise and say it."""

    key: str
    axis: str  # at most one op per axis in a concept (warmer and cooler share one)
    group: str  # "colour" or "structural"
    stage: str  # one of STAGES
    levels: tuple[tuple[dict, ...], ...]  # recipe steps per level (1, 2, 3) or a single level
    keywords: str  # regular expression finding the op in a chunk of text
    phrases: tuple[Phrase, ...]

    def steps(self, level: int) -> list[dict]:
        return [dict(s) for s in self.levels[min(level, len(self.levels)) - 1]]


def _ops() -> dict[str, FamilyOp]:
    a, p, j = ADVERB, PARTICIPLE, ADJECTIVE
    one = {1: ("",), 2: ("",), 3: ("",)}

    def lv(op: str, key: str, values: tuple, **fixed) -> tuple[tuple[dict, ...], ...]:
        return tuple(({"op": op, key: v, **fixed},) for v in values)

    ops = [
        # colour and tone
        FamilyOp(
            "warmer",
            "temperature",
            "colour",
            "colour",
            lv("temperature", "amount", (0.12, 0.3, 0.55)),
            r"\bwarm(er|th)?\b",
            (Phrase("adj", "{w} warmer", a), Phrase("clause", "make the colours {w} warmer", a)),
        ),
        FamilyOp(
            "cooler",
            "temperature",
            "colour",
            "colour",
            lv("temperature", "amount", (-0.12, -0.3, -0.55)),
            r"\bcool(er)?\b|\bcold(er)?\b",
            (Phrase("adj", "{w} cooler", a), Phrase("clause", "make the colours {w} cooler", a)),
        ),
        FamilyOp(
            "green-tint",
            "tint",
            "colour",
            "colour",
            lv("tint", "amount", (-0.1, -0.25, -0.45)),
            r"\bgreen(ish)?\b",
            (Phrase("clause", "add a {w} green tint", j), Phrase("with", "a {w} green tint", j)),
        ),
        FamilyOp(
            "magenta-tint",
            "tint",
            "colour",
            "colour",
            lv("tint", "amount", (0.1, 0.25, 0.45)),
            r"\bmagenta\b",
            (Phrase("clause", "add a {w} magenta tint", j), Phrase("with", "a {w} magenta tint", j)),
        ),
        FamilyOp(
            "saturated",
            "saturation",
            "colour",
            "colour",
            lv("saturation", "amount", (1.2, 1.45, 1.8)),
            r"\bsaturated\b|\bcolou?rful\b|\bvivid\b",
            (Phrase("adj", "{w} more saturated", a), Phrase("adj", "{w} more colourful", a)),
        ),
        FamilyOp(
            "desaturated",
            "saturation",
            "colour",
            "colour",
            lv("saturation", "amount", (0.75, 0.5, 0.25)),
            r"\bdesaturated?\b|\bmuted\b",
            (Phrase("adj", "{w} desaturated", p), Phrase("adj", "{w} muted", p)),
        ),
        FamilyOp(
            "brighter",
            "exposure",
            "colour",
            "colour",
            lv("exposure", "stops", (0.25, 0.5, 0.9)),
            r"\bbrighter\b|\bbrighten(ed)?\b|\blighter\b",
            (Phrase("adj", "{w} brighter", a),),
        ),
        FamilyOp(
            "darker",
            "exposure",
            "colour",
            "colour",
            lv("exposure", "stops", (-0.25, -0.5, -0.9)),
            r"\bdarker\b|\bdarken(ed)?\b",
            (Phrase("adj", "{w} darker", a),),
        ),
        FamilyOp(
            "more-contrast",
            "contrast",
            "colour",
            "colour",
            lv("contrast", "amount", (1.15, 1.35, 1.7)),
            r"\b(more|higher|high|extra|added|punchier) contrast\b|\bpunchier\b",
            (Phrase("with", "{w} more contrast", a), Phrase("clause", "give it {w} more contrast", a)),
        ),
        FamilyOp(
            "less-contrast",
            "contrast",
            "colour",
            "colour",
            lv("contrast", "amount", (0.85, 0.7, 0.5)),
            r"\b(less|lower|low|reduced) contrast\b|\bflatter\b",
            (Phrase("with", "{w} less contrast", a), Phrase("adj", "{w} flatter", a)),
        ),
        FamilyOp(
            "faded",
            "fade",
            "colour",
            "colour",
            lv("fade", "amount", (0.15, 0.35, 0.6)),
            r"\bfaded?\b|\bmatte\b",
            (Phrase("adj", "{w} faded", p), Phrase("with", "a {w} matte look", j)),
        ),
        FamilyOp(
            "sepia",
            "toning",
            "colour",
            "colour",
            lv("sepia", "amount", (0.35, 0.65, 1.0)),
            r"\bsepia\b",
            (Phrase("clause", "add a {w} sepia tone", j), Phrase("with", "a {w} sepia tone", j)),
        ),
        FamilyOp(
            "black-and-white",
            "toning",
            "colour",
            "colour",
            (({"op": "grayscale", "amount": 1.0},),),
            r"\bblack_and_white\b|\bgr[ae]yscale\b|\bmonochrome\b",
            (
                Phrase("adj", "black and white", one),
                Phrase("clause", "turn it black and white", one),
                Phrase("adj", "monochrome", one),
            ),
        ),
        FamilyOp(
            "hue-shift",
            "hue",
            "colour",
            "colour",
            lv("hue_shift", "degrees", (20.0, 45.0, 90.0)),
            r"\bhues?\b",
            (Phrase("clause", "give it a {w} hue shift", j), Phrase("with", "a {w} hue shift", j)),
        ),
        # structure
        FamilyOp(
            "blurred",
            "blur",
            "structural",
            "pre",
            lv("gaussian_blur", "sigma", (0.8, 1.6, 3.0)),
            r"\bblur(red|ry)?\b|\bout of focus\b",
            (Phrase("adj", "{w} blurred", p), Phrase("adj", "{w} blurry", p)),
        ),
        FamilyOp(
            "sharpened",
            "blur",
            "structural",
            "pre",
            lv("sharpen", "amount", (0.6, 1.2, 2.4), sigma=1.5),
            r"\bsharpen(ed)?\b|\bsharper\b|\bcrisper\b",
            (Phrase("adj", "{w} sharpened", p), Phrase("adj", "{w} crisper", a)),
        ),
        FamilyOp(
            "posterized",
            "shape",
            "structural",
            "structure",
            lv("posterize", "levels", (8, 5, 3)),
            r"\bposteri[sz](e|ed|ation)\b",
            (Phrase("adj", "{w} posterized", p),),
        ),
        FamilyOp(
            "pixelated",
            "shape",
            "structural",
            "structure",
            lv("pixelate", "block", (3, 5, 8)),
            r"\bpixel(ated|ate|ized|ised)\b",
            (Phrase("adj", "{w} pixelated", p),),
        ),
        FamilyOp(
            "halftone",
            "shape",
            "structural",
            "structure",
            tuple(({"op": "halftone", "cell": c, "angle": 45.0},) for c in (3, 7, 11)),
            r"\bhalf-?tone\b",
            (
                Phrase("clause", "print it as a {w} halftone", FINENESS),
                Phrase("with", "a {w} halftone pattern", FINENESS),
            ),
        ),
        FamilyOp(
            "pencil-sketch",
            "shape",
            "structural",
            "structure",
            tuple(
                ({"op": "pencil_sketch", "sigma_s": 60.0, "sigma_r": r, "shade": s},)
                for r, s in ((0.04, 0.02), (0.07, 0.04), (0.14, 0.08))
            ),
            r"\bpencil\b|\bsketch(ed)?\b|\bgraphite\b",
            (Phrase("clause", "turn it into a {w} pencil sketch", j), Phrase("with", "a {w} pencil sketch look", j)),
        ),
        FamilyOp(
            "cartoon",
            "shape",
            "structural",
            "structure",
            tuple(({"op": "cartoon", "colors": c},) for c in (12, 8, 5)),
            r"\bcartoon(ish|y|ed)?\b",
            (Phrase("clause", "make it look like a {w} cartoon", j), Phrase("with", "a {w} cartoon look", j)),
        ),
        FamilyOp(
            "ink-drawing",
            "shape",
            "structural",
            "structure",
            tuple(({"op": "edges", "style": "ink", "thickness": t},) for t in (1, 2, 3)),
            r"\bink\b|\boutlines?\b",
            (Phrase("clause", "turn it into a {w} ink drawing", j),),
        ),
        FamilyOp(
            "embossed",
            "shape",
            "structural",
            "structure",
            tuple(({"op": "emboss", "strength": s, "colour": True},) for s in (0.6, 1.0, 1.8)),
            r"\bemboss(ed)?\b|\brelief\b",
            (Phrase("adj", "{w} embossed", p),),
        ),
        FamilyOp(
            "painterly",
            "shape",
            "structural",
            "structure",
            tuple(
                ({"op": "stylization", "sigma_s": s, "sigma_r": r},)
                for s, r in ((30.0, 0.2), (60.0, 0.35), (90.0, 0.55))
            ),
            r"\bpaint(ed|ing|erly)\b",
            (Phrase("clause", "make it look like a {w} painting", j), Phrase("adj", "{w} painterly", p)),
        ),
        # finishing
        FamilyOp(
            "vignette",
            "vignette",
            "colour",
            "vignette",
            lv("vignette", "amount", (0.25, 0.5, 0.8)),
            r"\bvignett(e|ed|ing)\b",
            (Phrase("clause", "add a {w} vignette", j), Phrase("with", "a {w} vignette", j)),
        ),
        FamilyOp(
            "grain",
            "grain",
            "structural",
            "grain",
            lv("grain", "amount", (0.03, 0.07, 0.14)),
            r"\bgrain(y)?\b|\bnois(e|y)\b",
            (
                Phrase("clause", "add {w} film grain", {1: ("fine", "light"), 2: ("some", ""), 3: ("heavy", "coarse")}),
                Phrase("adj", "{w} grainy", p),
            ),
        ),
    ]
    return {o.key: o for o in ops}


FAMILY_OPS: dict[str, FamilyOp] = _ops()

#: pairs of ops that no training concept combines, and op levels no training concept uses
HELD_OUT_PAIRS = frozenset(
    frozenset(p)
    for p in (
        ("cooler", "vignette"),
        ("desaturated", "grain"),
        ("pixelated", "warmer"),
        ("halftone", "sepia"),
        ("pencil-sketch", "cooler"),
        ("blurred", "faded"),
        ("painterly", "more-contrast"),
        ("green-tint", "darker"),
    )
)
HELD_OUT_LEVELS = frozenset({("cooler", 3), ("posterized", 1), ("saturated", 3), ("ink-drawing", 3)})

FILLER = frozenset(
    {
        "make",
        "it",
        "the",
        "photo",
        "image",
        "picture",
        "a",
        "an",
        "look",
        "looks",
        "like",
        "give",
        "add",
        "turn",
        "into",
        "please",
        "me",
        "some",
        "its",
        "colours",
        "colors",
        "colour",
        "color",
        "tone",
        "tones",
        "effect",
        "apply",
        "style",
        "as",
        "print",
        "more",
        "slightly",
        "bit",
    }
)
SPLIT_RE = re.compile(r",|;|\band\b|\bwith\b|\bthen\b|\bplus\b")


@dataclass(frozen=True)
class FamilyConcept:
    """A composition of family ops at levels, and the instruction that says it."""

    ops: tuple[tuple[str, int], ...]  # (family op key, level), in application order
    instruction: str

    @property
    def recipe(self) -> list[dict]:
        return recipe_of(self.ops)

    @property
    def name(self) -> str:
        """A stable name from the recipe (the same edit has one name whatever its phrasing)."""
        digest = hashlib.sha256(json.dumps(self.recipe, sort_keys=True).encode()).hexdigest()[:10]
        return f"fam-{digest}"

    @property
    def group(self) -> str:
        return "structural" if any(FAMILY_OPS[k].group == "structural" for k, _ in self.ops) else "colour"

    @property
    def region(self) -> str:
        return "held-out" if is_held_out(self.ops) else "train"

    def card_data(self) -> dict[str, Any]:
        """The concept as a card mapping (``concepts.cards.parse_card`` accepts it)."""
        return {
            "name": self.name,
            "instruction": self.instruction,
            "teacher": {"kind": "classic", "recipe": self.recipe},
            "tags": ["family", self.group, *(k for k, _ in self.ops)],
        }


def _canonical(ops: list[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(ops, key=lambda o: (STAGES.index(FAMILY_OPS[o[0]].stage), o[0])))


def recipe_of(ops: tuple[tuple[str, int], ...] | list[tuple[str, int]]) -> list[dict]:
    """The validated classic recipe of (op, level) pairs, in stage order."""
    steps = [s for key, level in _canonical(list(ops)) for s in FAMILY_OPS[key].steps(level)]
    return validate_recipe(steps, "family concept")


def is_held_out(ops: tuple[tuple[str, int], ...]) -> bool:
    keys = [k for k, _ in ops]
    pairs = {frozenset((a, b)) for i, a in enumerate(keys) for b in keys[i + 1 :]}
    return bool(pairs & HELD_OUT_PAIRS) or any(
        (k, min(lv, len(FAMILY_OPS[k].levels))) in HELD_OUT_LEVELS for k, lv in ops
    )


# -- writing -----------------------------------------------------------------------------------------
def _say(phrase: Phrase, level: int, rng: random.Random) -> str:
    word = rng.choice(phrase.words.get(level, ("",)))
    return " ".join(phrase.text.replace("{w}", word).split())


def write_instruction(ops: tuple[tuple[str, int], ...], rng: random.Random) -> str:
    """An instruction for ``ops`` with varied phrasing that ``parse_instruction`` reads back exactly."""
    chosen = [(rng.choice(FAMILY_OPS[k].phrases), lv) for k, lv in ops]
    rng.shuffle(chosen)
    chosen.sort(key=lambda c: c[0].kind == "with")  # "with" phrases go last
    if chosen[0][0].kind == "with":  # ... and never first: say it as a clause instead
        chosen[0] = (Phrase("clause", "give it " + chosen[0][0].text, chosen[0][0].words), chosen[0][1])
    parts: list[str] = []
    for i, (phrase, level) in enumerate(chosen):
        text = _say(phrase, level, rng)
        if phrase.kind == "adj" and (i == 0 or chosen[i - 1][0].kind != "adj"):
            text = rng.choice(("make it ", "make the photo ", "make the image ")) + text
        if i == 0:
            parts.append(text)
        elif phrase.kind == "with":
            parts.append(rng.choice((", with ", " with ")) + text)
        else:
            last = i == len(chosen) - 1 or chosen[i + 1][0].kind == "with"
            parts.append((rng.choice((" and ", ", and ")) if last else ", ") + text)
    return "".join(parts)


def _sample_ops(rng: random.Random, region: str) -> tuple[tuple[str, int], ...]:
    keys = sorted(FAMILY_OPS)
    for _ in range(1000):
        n = rng.choices((1, 2, 3), weights=(0.3, 0.45, 0.25))[0]
        picked: list[tuple[str, int]] = []
        for key in rng.sample(keys, len(keys)):
            op = FAMILY_OPS[key]
            if any(FAMILY_OPS[k].axis == op.axis for k, _ in picked):
                continue
            if op.stage == "structure" and any(FAMILY_OPS[k].stage == "structure" for k, _ in picked):
                continue
            picked.append((key, rng.randint(1, len(op.levels)) if len(op.levels) > 1 else 1))
            if len(picked) == n:
                break
        ops = _canonical(picked)
        if (region == "held-out") == is_held_out(ops):
            return ops
    raise FactoryError(f"could not sample a {region} family concept")


def sample_concepts(n: int, seed: int, region: str = "train", exclude: set[str] | None = None) -> list[FamilyConcept]:
    """``n`` distinct family concepts (by recipe) of ``region`` ("train" or "held-out"), the same for a seed."""
    if region not in ("train", "held-out"):
        raise FactoryError(f"region must be train or held-out, got {region!r}")
    rng = random.Random(f"family:{seed}:{region}")
    out: dict[str, FamilyConcept] = {}
    seen = set(exclude or ())
    for _ in range(50 * n + 1000):
        if len(out) == n:
            break
        ops = _sample_ops(rng, region)
        concept = FamilyConcept(ops, write_instruction(ops, rng))
        if concept.name not in seen:
            seen.add(concept.name)
            out[concept.name] = concept
    if len(out) < n:
        raise FactoryError(f"only {len(out)} distinct {region} family concepts for seed {seed} (asked for {n})")
    return list(out.values())


# -- reading -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Parsed:
    """What ``parse_instruction`` found: the ops (None when the text is outside the grammar) and why not."""

    ops: tuple[tuple[str, int], ...] | None
    reason: str = ""

    @property
    def concept(self) -> FamilyConcept | None:
        return None if self.ops is None else FamilyConcept(self.ops, "")


def _level(chunk: str) -> int:
    for level in (1, 3):
        if any(re.search(rf"\b{re.escape(w)}\b", chunk) for w in LEVEL_WORDS[level]):
            return level
    return 2


def parse_instruction(text: str) -> Parsed:
    """The family ops an instruction asks for, or why it is outside the family's grammar."""
    t = " ".join(str(text).lower().split())
    t = re.sub(r"\bblack(\s+|-)(and|&)(\s+|-)white\b", "black_and_white", t)  # one word: "and" splits chunks
    t = re.sub(r"\bhalf\s+tone\b", "halftone", t)
    found: dict[str, tuple[str, int]] = {}
    for chunk in (c.strip() for c in SPLIT_RE.split(t)):
        if not chunk:
            continue
        keys = [k for k, op in FAMILY_OPS.items() if re.search(op.keywords, chunk)]
        if not keys:
            rest = [w for w in re.findall(r"[a-z]+", chunk) if w not in FILLER]
            if rest and not all(any(w in lw.split() for lw in LEVEL_WORDS[1] + LEVEL_WORDS[3]) for w in rest):
                return Parsed(None, f"'{chunk}' names no edit of the family (known: {', '.join(sorted(FAMILY_OPS))})")
            continue
        level = _level(chunk)
        for key in keys:
            axis = FAMILY_OPS[key].axis
            if axis in found and found[axis][0] != key:
                return Parsed(None, f"'{found[axis][0]}' and '{key}' contradict each other")
            found[axis] = (key, level if len(FAMILY_OPS[key].levels) > 1 else 1)
    if not found:
        return Parsed(None, "no edit of the family named")
    structure = [k for k, _ in found.values() if FAMILY_OPS[k].stage == "structure"]
    if len(structure) > 1:
        return Parsed(None, f"{' and '.join(structure)} both redraw the image; the family combines at most one")
    return Parsed(_canonical(list(found.values())))


def teaches_family_recipe(card: ConceptCard) -> bool:
    """Whether ``card``'s teacher is the family's own recipe for its instruction: a family concept, or a card that
    ``factory concepts new --teacher classic`` composed from a text the grammar reads (not a built-in whose text
    the grammar happens to read: its hand-written recipe differs)."""
    if card.teacher.kind != "classic":
        return False
    parsed = parse_instruction(card.instruction)
    if parsed.ops is None:
        return False
    try:
        return validate_recipe(card.teacher.params.get("recipe"), "card") == recipe_of(parsed.ops)
    except FactoryError:
        return False


# -- cards in a workspace ------------------------------------------------------------------------------
def family_cards(workspace: Workspace, n: int, seed: int = 0, region: str = "train") -> list[ConceptCard]:
    """``sample_concepts(n, seed, region)`` as cards in ``<workspace>/concepts/`` (``family_card``)."""
    return [family_card(workspace, concept) for concept in sample_concepts(n, seed, region)]


def family_card(workspace: Workspace, concept: FamilyConcept) -> ConceptCard:
    """``concept`` as a card in ``<workspace>/concepts/`` (written once, then read back), so every command
    (``synth``, ``base train``, ``run``) finds it by name."""
    import yaml

    from concepts.cards import load_card
    from factory.core.atomic import atomic_write_text

    path = workspace.concepts / f"{concept.name}.yaml"
    if not path.is_file():
        atomic_write_text(path, yaml.safe_dump(concept.card_data(), sort_keys=False))
    return load_card(path)
