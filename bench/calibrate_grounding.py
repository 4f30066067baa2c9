"""Calibrate grounding: GROUNDING_RANGE (rag/retrieve.py) and RAG_MIN_RELEVANCE, on answerable vs off-topic questions.

A question is answered when its grounding evidence reaches the threshold: its best retrieved chunk's relevance, where
relevance = max(rarity-weighted share of the question's words in the chunk, similarity rescaled to 0..1) and
similarity is the plain cosine for a chunk in the question's language, the centred one for a chunk in another (each
with its own range), plus RAG_SENTENCE_WEIGHT times the similarity of the retrieved sentence closest to the question.
Questions are asked in a bilingual collection and in the collection of their documents' language alone (off-topic
ones in all three). The ranges and the threshold are chosen together on the tune half: the most off-topic refusals
while at least MIN_ANSWERED of the answerable questions (every language pair) are answered. The report half shows
what they give, by question language. Each question is searched once per variant; the grid replays the retriever's
evidence (coverage, similarity). Two variants, each calibrated on the tune half and shown side by side: with and
without reading a chunk in the other language against the question's dictionary translation (TRANSLATED_COVERAGE in
rag/retrieve.py: the share of the question's words the chunk holds in translation counts as coverage).
RAG_UNKNOWN_WORD_PENALTY (relevance lost in proportion to the share of the question's words that no chunk holds in
either language) is offered to the same search, the best choice without it shown beside; then, as it is chosen,
the ranges held: the penalty and the sentence weight that best separate answerable from off-topic questions (ROC
AUC), and RAG_MIN_RELEVANCE for the most refusals at the release before's answered rate. Last, the
shipped constants and the release before's on evidence with Chinese words translated by whole glosses
(rag/dictionary.py, WHOLE_GLOSSES) and by any word of a gloss, side by side.

Usage: .venv/bin/python bench/calibrate_grounding.py [--scale small|full] [--embed-model SETTING] [--chunk-size N]
"""

from __future__ import annotations

import itertools
import json
import sys
from dataclasses import dataclass

import numpy as np
from benchlib import ROOT, header, parse_scale, write_results
from devsets import add_dev_store_options, build_dev_stores, cached_passages, cached_queries, dev_cases, offtopic

MIN_ANSWERED = 0.97
SAME_LOWS = np.round(np.arange(0.78, 0.901, 0.01), 3)
SAME_WIDTHS = (0.03, 0.05, 0.08, 0.10)
CROSS_LOWS = (0.10, 0.15, 0.20, 0.25, 0.30)
CROSS_WIDTHS = (0.05, 0.10, 0.15, 0.20)
THRESHOLDS = np.round(np.arange(0.15, 0.901, 0.05), 3)
PENALTIES = (0.0, 0.25, 0.5, 0.75, 1.0)  # RAG_UNKNOWN_WORD_PENALTY, in the search of everything together
# RAG_UNKNOWN_WORD_PENALTY and RAG_MIN_RELEVANCE chosen together with the ranges held (how it was chosen): finer steps.
PENALTY_STEPS = np.round(np.arange(0.0, 1.001, 0.05), 3)
PENALTY_THRESHOLDS = np.round(np.arange(0.10, 0.901, 0.01), 3)
# RAG_SENTENCE_WEIGHT, chosen with the penalty (the closest sentence's similarity, on the fusion's scale, is 0.4-1.6).
WEIGHT_STEPS = np.round(np.arange(0.0, 0.601, 0.05), 3)
# RAG_MIN_RELEVANCE, RAG_UNKNOWN_WORD_PENALTY and RAG_SENTENCE_WEIGHT of the release before the sentence evidence.
BEFORE = (0.16, 0.6, 0.0)
# What the release before the penalty answered on the tune half (0.964): the floor the penalty was chosen at. A fixed
# number, so that a later change (whole-gloss translation) is calibrated to the same promise, not to what the old
# constants answer under it.
ANSWERED_FLOOR = 0.964
# RAG_UNKNOWN_WORD_PENALTY is chosen by how well the best relevance tells answerable from off-topic questions on the
# tune half over every threshold (ROC AUC: the chance that an answerable question outranks an off-topic one), then
# RAG_MIN_RELEVANCE as the most refusals at ANSWERED_FLOOR. The most refusals at the floor alone moved the pair by two
# of 186 off-topic questions (0.16 / 0.6 -> 0.26 / 0.15, whose AUC is lower); the AUC moves smoothly with the penalty.
# The shipped penalty stays unless another's AUC is AUC_MARGIN higher: less than half of one answerable question
# passing every off-topic one (1/417 = 0.0024).
AUC_MARGIN = 0.001
# RAG_MIN_RELEVANCE and RAG_UNKNOWN_WORD_PENALTY of the release before Chinese words were translated by whole glosses.
BEFORE_WHOLE_GLOSSES = (0.2, 0.5)
HITS = 5


@dataclass
class Questions:
    """Grounding evidence of a list of questions as arrays (one row per question, HITS columns per retrieved chunk):
    the grid replays grounding on them without searching again."""

    coverage: np.ndarray
    similarity: np.ndarray  # nan where a chunk has none
    same: np.ndarray  # the chunk is in the question's language
    unknown: np.ndarray  # share of the question's words no chunk holds (rag/retrieve.py, unknown_share)
    sentence: np.ndarray  # similarity of the retrieved sentence closest to the question (rag/quotes.py, RatedSentences)
    named: np.ndarray  # names something no chunk holds (rag/names.py): refused whatever the relevance
    cjk: np.ndarray  # written in Chinese (or Japanese, Korean): the only questions checked for names before identifiers
    language: np.ndarray
    kind: np.ndarray  # off-topic kind ("near", "far") or ""

    @classmethod
    def ask(cls, asked: list[tuple[object, str, str]]) -> Questions:
        """``asked``: (service, question, kind) triples."""
        from rag.language import detect_language
        from rag.names import is_cjk_question

        n = len(asked)
        coverage, similarity, same = np.zeros((n, HITS)), np.full((n, HITS), np.nan), np.ones((n, HITS), dtype=bool)
        unknown, named, sentence = np.zeros(n), np.zeros(n, dtype=bool), np.zeros(n)
        for i, (service, question, _) in enumerate(asked):
            language = detect_language(question)
            hits = service.retriever.search(question, HITS)[:HITS]
            for j, h in enumerate(hits):
                coverage[i, j] = h.coverage
                similarity[i, j] = np.nan if h.similarity is None else h.similarity
                same[i, j] = h.lang == language
            sentence[i] = service.answerer.rate_sentences(question, hits).best()
            unknown[i] = service.retriever.unknown_share(question)
            named[i] = bool(service.retriever.absent_names(question))
        languages = np.array([detect_language(q) for _, q, _ in asked])
        cjk = np.array([is_cjk_question(q) for _, q, _ in asked], dtype=bool)
        kinds = np.array([k or "" for _, _, k in asked])
        return cls(coverage, similarity, same, unknown, sentence, named, cjk, languages, kinds)

    def relevance(self, g: tuple, names: bool | str = True) -> np.ndarray:
        """Each question's grounding evidence under constants ``g`` = (same low, width, cross low, width, threshold,
        penalty, sentence weight): the best relevance as rag/retrieve.py computes it, plus the sentence weight times
        the closest sentence's similarity (rag/answer.py, Answerer.evidence)."""
        low = np.where(self.same, g[0], g[2])
        width = np.where(self.same, g[1], g[3])
        dense = np.nan_to_num(np.clip((self.similarity - low) / width, 0.0, 1.0))
        best = np.max(np.maximum(self.coverage, dense), axis=1) - g[5] * self.unknown + g[6] * self.sentence
        if not names:
            return best
        return np.where(self.named & self.cjk if names == "cjk" else self.named, -1.0, best)


def rates(
    halves: dict, split: str, g: tuple, language: str | None = None, names: bool | str = True, kind: str | None = None
) -> tuple[float, float, int, int]:
    """(answered, refused, answerable questions, off-topic questions) of one half with constants ``g``."""
    out = []
    for questions in halves[split]:
        keep = np.ones(len(questions.language), dtype=bool)
        if language:
            keep &= questions.language == language
        if kind:
            keep &= questions.kind == kind
        out.append((questions.relevance(g, names) >= g[4])[keep])
    yes, no = out
    answered = float(yes.mean()) if len(yes) else float("nan")
    refused = float(1 - no.mean()) if len(no) else float("nan")
    return answered, refused, len(yes), len(no)


def calibrate(halves: dict[str, tuple], scale: str, shipped: tuple) -> tuple[tuple, dict]:
    """Choose the ranges, the threshold and the unknown-word penalty together on the tune half: the most off-topic
    refusals while answering at least MIN_ANSWERED. Print both halves' rates beside the best choice without the
    penalty, the ``shipped`` constants and the release before the penalty."""
    grid = list(itertools.product(SAME_LOWS, SAME_WIDTHS, CROSS_LOWS, CROSS_WIDTHS, THRESHOLDS, PENALTIES, shipped[6:]))
    if scale != "full":
        grid = [*grid[:: max(1, len(grid) // 3000)], shipped]
    scored = {g: rates(halves, "tune", g)[:2] for g in grid}
    feasible = [g for g in grid if scored[g][0] >= MIN_ANSWERED] or grid

    def pick(options: list[tuple]) -> tuple:
        return max(options, key=lambda g: (scored[g][1], scored[g][0]))

    chosen = pick(feasible)
    without = pick([g for g in feasible if g[5] == 0] or feasible)
    print(f"chosen on the tune half (answered >= {MIN_ANSWERED}): {describe(chosen)}")
    print(f"best without the penalty: {describe(without)}; shipped: {describe(shipped)}")
    before = (*shipped[:4], *BEFORE)
    columns = {"chosen": chosen, "chosen without the penalty": without, "shipped": shipped, "release before": before}
    return chosen, print_rates(halves, columns, names_of="chosen")


def separation(halves: dict, split: str, g: tuple) -> float:
    """ROC AUC of the best relevance under constants ``g`` (threshold aside) as a test of answerable against
    off-topic: the share of (answerable, off-topic) pairs in which the answerable question scores higher, ties half."""
    yes, no = (questions.relevance(g) for questions in halves[split])
    return float((yes[:, None] > no[None, :]).mean() + 0.5 * (yes[:, None] == no[None, :]).mean())


def calibrate_penalty(halves: dict[str, tuple], shipped: tuple) -> tuple[tuple, dict]:
    """How RAG_UNKNOWN_WORD_PENALTY, RAG_SENTENCE_WEIGHT and RAG_MIN_RELEVANCE are chosen, the ranges held at the
    shipped ones: the penalty and the sentence weight with the best separation on the tune half (the shipped pair
    kept unless the best is AUC_MARGIN higher), then the threshold with the most off-topic refusals there while
    answering ANSWERED_FLOOR of the answerable questions. Beside it, the triple with the most refusals at the floor
    (the chooser before the AUC one) and the release before the sentence evidence."""
    before = (*shipped[:4], *BEFORE)
    floor = ANSWERED_FLOOR
    aucs = {
        (float(k), float(w)): separation(halves, "tune", (*shipped[:4], 0.0, k, w))
        for k in PENALTY_STEPS
        for w in WEIGHT_STEPS
    }
    print("\n| sentence weight | best penalty at it | AUC, tune half | AUC, report half | AUC at the shipped penalty, "
          "tune |\n|---|---|---|---|---|")  # fmt: skip
    for w in WEIGHT_STEPS:
        k = max(PENALTY_STEPS, key=lambda k: aucs[(float(k), float(w))])
        report = separation(halves, "report", (*shipped[:4], 0.0, k, w))
        at_shipped = separation(halves, "tune", (*shipped[:4], 0.0, shipped[5], w))
        print(f"| {w:.2f} | {k:.2f} | {aucs[(float(k), float(w))]:.4f} | {report:.4f} | {at_shipped:.4f} |")
    best = max(aucs, key=aucs.__getitem__)
    own = separation(halves, "tune", shipped)
    pair = (shipped[5], shipped[6]) if aucs[best] < own + AUC_MARGIN else best
    print(f"best separation: penalty {best[0]}, sentence weight {best[1]} (AUC {aucs[best]:.4f}); shipped "
          f"{shipped[5]}, {shipped[6]} ({own:.4f}) -> {pair[0]}, {pair[1]}")  # fmt: skip

    def at_floor(pairs) -> tuple:
        grid = [(*shipped[:4], t, k, w) for k, w in pairs for t in PENALTY_THRESHOLDS]
        scored = {g: rates(halves, "tune", g)[:2] for g in grid}
        feasible = [g for g in grid if scored[g][0] >= floor - 1e-9] or grid
        return max(feasible, key=lambda g: (scored[g][1], scored[g][0], -g[5], -g[6]))

    chosen, floor_only = at_floor([pair]), at_floor(list(aucs))
    print(f"\nranges held, penalty and sentence weight by separation, threshold at answered >= {floor:.3f}: "
          f"{describe(chosen)}")  # fmt: skip
    print(f"most refusals at the floor, any penalty and sentence weight: {describe(floor_only)}")
    columns = {"chosen": chosen, "most refusals at the floor": floor_only, "shipped": shipped,
               "release before (no sentence evidence)": before}  # fmt: skip
    return chosen, print_rates(halves, columns, names_of="chosen")


def describe(g: tuple) -> str:
    same, cross = (float(g[0]), round(float(g[0] + g[1]), 3)), (float(g[2]), round(float(g[2] + g[3]), 3))
    return (f"GROUNDING_RANGE same={same} cross={cross}, RAG_MIN_RELEVANCE={float(g[4])}, "
            f"RAG_UNKNOWN_WORD_PENALTY={float(g[5])}, RAG_SENTENCE_WEIGHT={float(g[6])}")  # fmt: skip


def print_rates(
    halves: dict, constants: dict[str, tuple], names_of: str | None = None, evidence: dict[str, dict] | None = None
) -> dict:
    """A table of answered / refused per half and question language (and off-topic kind) for each set of constants;
    ``names_of``: also show those constants without the check of absent names, and with names checked in Chinese
    questions only (as before rag/names.py's ``identifiers``); ``evidence``: columns read on other evidence than
    ``halves`` (gathered under other code: rag/dictionary.py, WHOLE_GLOSSES)."""
    evidence = evidence or {}
    columns = list(constants)
    head = " | ".join(f"{c} (answered / refused)" for c in columns)
    extra = f" | {names_of}, without the name check | {names_of}, names in Chinese questions only" if names_of else ""
    print(f"| half | question language | {head}{extra} |")
    print("|---|---|" + "---|" * (len(columns) + 2 * bool(names_of)))
    table: dict[str, dict[str, list]] = {}
    for split in ("tune", "report"):
        table[split] = {}
        for language, kind in [(None, None), ("en", None), ("zh", None), (None, "near"), (None, "far")]:
            label = f"off-topic, {kind}" if kind else (language or "all")
            cells = []
            for c in columns:
                a, r, ny, nn = rates(evidence.get(c, halves), split, constants[c], language, kind=kind)
                table[split][f"{label}, {c}"] = [None if kind else a, r, ny, nn]
                cells.append(f"{'-' if kind else f'{a:.3f} of {ny}'} / {r:.3f} of {nn}")
            if names_of:
                a, r, ny, nn = rates(halves, split, constants[names_of], language, names=False, kind=kind)
                table[split][f"{label}, {names_of}, without the name check"] = [None if kind else a, r, ny, nn]
                cells.append(f"{'-' if kind else f'{a:.3f}'} / {r:.3f}")
                a, r, ny, nn = rates(halves, split, constants[names_of], language, names="cjk", kind=kind)
                table[split][f"{label}, {names_of}, names in Chinese questions only"] = [None if kind else a, r, ny, nn]
                cells.append(f"{'-' if kind else f'{a:.3f}'} / {r:.3f}")
            print(f"| {split} | {label} | " + " | ".join(cells) + " |")
    return table


def main() -> int:
    args = parse_scale(__doc__.splitlines()[0], extra=add_dev_store_options)
    meta = header("calibrate_grounding", args)
    stores = build_dev_stores(args)
    service = stores["mixed"]
    for store in stores.values():
        cached_passages(cached_queries(store.embedder))
    extra_off = json.loads((ROOT / "bench" / "datasets" / "unanswerable.json").read_text(encoding="utf-8"))
    import rag.retrieve

    def ask_all() -> dict[str, tuple]:
        halves = {}
        for split, parity in (("tune", 0), ("report", 1)):
            answerable = [(store, i["question"], "") for _, store, items in dev_cases(stores, split) for i in items]
            questions = [(i["question"], i.get("kind")) for i in offtopic(split)] + [
                (q, None) for q in extra_off[parity::2]
            ]
            off = [(store, q, kind) for store in stores.values() for q, kind in questions]  # asked in every collection
            halves[split] = (Questions.ask(answerable), Questions.ask(off))
        return halves

    # Grounding with and without reading chunks in the other language against the question's dictionary translation
    # (rag/retrieve.py, TRANSLATED_COVERAGE), each calibrated on the tune half, side by side.
    shipped = rag.retrieve.TRANSLATED_COVERAGE
    variants = {}
    for translated in (shipped, not shipped):
        rag.retrieve.TRANSLATED_COVERAGE = translated
        variants[translated] = ask_all()
    rag.retrieve.TRANSLATED_COVERAGE = shipped
    from rag import dictionary

    whole = dictionary.WHOLE_GLOSSES
    dictionary.WHOLE_GLOSSES = not whole  # a Chinese word read by any word of its glosses, as before
    other_glosses = ask_all()
    dictionary.WHOLE_GLOSSES = whole
    results = {}
    ranges = rag.retrieve.GROUNDING_RANGE.get(service.embedder.name, {})
    (same_low, same_high), (cross_low, cross_high) = ranges.get("same", (0.0, 1.0)), ranges.get("cross", (0.0, 1.0))
    settings = service.settings
    constants = (same_low, same_high - same_low, cross_low, cross_high - cross_low, settings.min_relevance,
                 settings.unknown_word_penalty, settings.sentence_weight)  # fmt: skip
    for translated, halves in variants.items():
        print(f"\n## TRANSLATED_COVERAGE={translated}" + (" (shipped)" if translated == shipped else ""))
        results[translated] = calibrate(halves, args.scale, constants)
    chosen, table = results[shipped]
    table["without TRANSLATED_COVERAGE" if shipped else "with TRANSLATED_COVERAGE"] = results[not shipped][1]
    penalty, penalty_table = calibrate_penalty(variants[shipped], constants)
    print(f"\n## Chinese words translated by whole glosses (WHOLE_GLOSSES={whole}) against any word of a gloss")
    before_gloss = (*constants[:4], *BEFORE_WHOLE_GLOSSES, 0.0)
    loose, strict = (other_glosses, variants[shipped]) if whole else (variants[shipped], other_glosses)
    loose_before, loose_shipped = "any word, release before's constants (0.2, penalty 0.5)", "any word, shipped"
    gloss_table = print_rates(
        strict,
        {loose_before: before_gloss, "whole glosses, release before's constants": before_gloss,
         "whole glosses, shipped": constants, loose_shipped: constants},
        evidence={loose_before: loose, loose_shipped: loose},
    )  # fmt: skip
    write_results(
        "calibrate_grounding",
        {"meta": meta, "embedder": service.embedder.name, "same_range": [chosen[0], chosen[0] + chosen[1]],
         "cross_range": [chosen[2], chosen[2] + chosen[3]], "threshold": chosen[4], "unknown_word_penalty": chosen[5],
         "sentence_weight": chosen[6],
         "min_answered": MIN_ANSWERED, "rates": table,
         "ranges held": {"threshold": penalty[4], "unknown_word_penalty": penalty[5], "sentence_weight": penalty[6],
                         "rates": penalty_table},
         "whole glosses": gloss_table},
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
