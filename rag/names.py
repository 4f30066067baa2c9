"""Names a Chinese question asks about that the documents never contain: a question the documents cannot answer.

e5 puts near-domain questions ("ChatGLM3 支持多长的上下文？" over articles about other models, "怎么在 Windows 上安装
CUDA 驱动？") as close to the documents as answerable ones, so similarity alone cannot refuse them. A name written in
Latin script inside Chinese text (CUDA, ChatGLM3, Stable Diffusion, GPT-4o) is written the same way in Chinese and in
English documents, so a name no chunk holds means the documents do not cover what is asked. Only questions written in
a CJK language are checked: an English question over Chinese documents names things the documents write in Chinese
(Pangu is 盘古), and a missing English word says nothing there. Only words with a capital or a digit count as names:
a lower-case English term in a Chinese question ("prompt") is often one the documents translate.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from rag.language import script_counts
from rag.tokenize import EN_STOP, keyword_tokens

MIN_CJK_CHARS = 4  # fewer, and the question is English with a Chinese term in it ("What does 辰星 mean?")
_LATIN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-.+#'][A-Za-z0-9]+)*")


def latin_names(question: str) -> list[str]:
    """The Latin-script names of a question written in Chinese (or Japanese, Korean); none for other questions."""
    counts = script_counts(question)
    cjk = counts["han"] + counts["kana"] + counts["hangul"]
    if cjk < max(MIN_CJK_CHARS, counts["latin"] / 3):
        return []
    return [
        word for word in _LATIN_NAME.findall(question)
        if word.lower() not in EN_STOP and any(c.isupper() or c.isdigit() for c in word)
    ]  # fmt: skip


def absent_names(question: str, known: Callable[[list[str]], dict[str, float]]) -> list[str]:
    """The names of ``question`` whose words no chunk holds; ``known`` maps tokens to their idf (the keyword index's,
    which leaves out the tokens no chunk holds). A name counts as present when each of its words with a letter is."""
    names = latin_names(question)
    if not names:
        return []
    tokens = {name: [t for t in keyword_tokens(name) if any(c.isalpha() for c in t)] for name in names}
    found = known(sorted({t for words in tokens.values() for t in words}))
    return [name for name, words in tokens.items() if words and any(t not in found for t in words)]
