"""Which language a question or a chunk is in, told by its scripts: Han, kana, Hangul, Latin.

Retrieval fuses BM25 and vectors with weights that depend on whether a chunk's language matches the question's
(BM25 only matches across languages on names and numbers), and answers use the question's language for their
fixed messages. Script counts are enough for that; a statistical language identifier would add a dependency and
still have to be told that a Chinese sentence full of English product names is Chinese.
"""

from __future__ import annotations

import re
from typing import Literal

Language = Literal["zh", "ja", "ko", "en", "other"]  # "en" stands for any Latin-script text

HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff"
KANA = r"\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f"
HANGUL = r"\u1100-\u11ff\u3130-\u318f\uac00-\ud7af"
_HAN = re.compile(f"[{HAN}]")
_KANA = re.compile(f"[{KANA}]")
_HANGUL = re.compile(f"[{HANGUL}]")
_ANY_CJK = re.compile(f"[{HAN}{KANA}{HANGUL}]")
# An identifier such as RAG_N_GPU_LAYERS or snake_case is one word, not four.
_LATIN_WORD = re.compile(r"[A-Za-z\u00c0-\u024f][A-Za-z0-9_\u00c0-\u024f'’-]*")
_OTHER_WORD = re.compile(r"[^\W\d_A-Za-z\u00c0-\u024f]+")
# One Latin word weighs about as much as one and a half Han characters (Chinese averages ~1.5 characters a word).
LATIN_WORD_WEIGHT = 1.5


def script_counts(text: str) -> dict[str, float]:
    han = len(_HAN.findall(text))
    kana = len(_KANA.findall(text))
    hangul = len(_HANGUL.findall(text))
    latin = len(_LATIN_WORD.findall(text)) * LATIN_WORD_WEIGHT
    other = len(_OTHER_WORD.findall(_ANY_CJK.sub(" ", text)))
    return {"han": han, "kana": kana, "hangul": hangul, "latin": latin, "other": other}


def detect_language(text: str) -> Language:
    """The language a reader would say the text is in; Latin script counts as English (the dev and test sets' other
    language), and text with no letters at all as "en" too, since nothing in it favours another language."""
    counts = script_counts(text)
    cjk = counts["han"] + counts["kana"]
    if counts["kana"] >= 2 and counts["kana"] >= 0.05 * cjk and cjk >= counts["latin"]:
        return "ja"
    best = max(("han", "hangul", "latin", "other"), key=lambda k: counts[k])
    if counts[best] == 0:
        return "en"
    return {"han": "zh", "hangul": "ko", "latin": "en", "other": "other"}[best]  # type: ignore[return-value]


def is_cjk_language(language: str) -> bool:
    return language in ("zh", "ja", "ko")
