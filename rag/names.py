"""Names a Chinese question asks about that the documents never contain: a question the documents cannot answer.

e5 puts near-domain questions ("ChatGLM3 支持多长的上下文？" over articles about other models, "怎么在 Windows 上安装
CUDA 驱动？") as close to the documents as answerable ones, so similarity alone cannot refuse them. A name written in
Latin script inside Chinese text (CUDA, ChatGLM3, Stable Diffusion, GPT-4o) is written the same way in Chinese and in
English documents, so a name no chunk holds means the documents do not cover what is asked. Only words with a capital or
a digit count as names: a lower-case English term in a Chinese question ("prompt") is often one the documents
translate.

An English question is checked for identifiers only: a word with a capital after its first letter or a digit
(OpenAI, TLS, GPT-4o, UTF-16), which Chinese documents write as English ones do. A capitalised word is not enough:
an English question over Chinese documents names things the documents write in Chinese (Pangu is 盘古, Chengdu 成都),
and the dictionary does not know them all. An identifier counts as present when the documents hold it in dictionary
translation (DNA: 脱氧核糖核酸).

A title in such a question (《红楼梦》) names a work as it is written too: the documents hold it or do not cover the
question. It is looked up by its character pairs and Latin words, which do not depend on how the text around it is
segmented into words. Text in other quotation marks is not checked: questions paraphrase inside them (「成都今天晴天」
for the article's 「今天成都天气咋样」).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection

from rag.language import HAN, HANGUL, KANA, script_counts
from rag.tokenize import EN_STOP, keyword_tokens

MIN_CJK_CHARS = 4  # fewer, and the question is English with a Chinese term in it ("What does 辰星 mean?")
_LATIN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-.+#'][A-Za-z0-9]+)*")
_CJK = re.compile(f"[{HAN}{KANA}{HANGUL}]")
_TITLE = re.compile(r"《([^》]+)》")


def is_cjk_question(question: str) -> bool:
    counts = script_counts(question)
    cjk = counts["han"] + counts["kana"] + counts["hangul"]
    return cjk >= max(MIN_CJK_CHARS, counts["latin"] / 3)


def latin_names(question: str) -> list[str]:
    """The Latin-script names of a question written in Chinese (or Japanese, Korean); none for other questions."""
    if not is_cjk_question(question):
        return []
    return [
        word for word in _LATIN_NAME.findall(question)
        if word.lower() not in EN_STOP and any(c.isupper() or c.isdigit() for c in word)
    ]  # fmt: skip


def identifiers(question: str) -> list[str]:
    """The identifiers of a question not written in Chinese (or Japanese, Korean): words with a capital after the
    first letter or a digit."""
    if is_cjk_question(question):
        return []
    return [
        word for word in _LATIN_NAME.findall(question)
        if any(c.isupper() for c in word[1:]) or any(c.isdigit() for c in word)
    ]  # fmt: skip


def titles(question: str) -> list[str]:
    """The 《titles》 of a question written in Chinese (or Japanese, Korean); none for other questions."""
    if not is_cjk_question(question):
        return []
    return [t.strip() for t in _TITLE.findall(question) if t.strip()]


def _lookup_tokens(term: str) -> list[str]:
    """The tokens a term is looked up by: Latin words, and CJK tokens of two characters (every character pair of the
    term is one; longer words depend on the segmentation of the text around them)."""
    return [t for t in keyword_tokens(term) if any(c.isalpha() for c in t) and (len(t) == 2 or not _CJK.search(t))]


def absent_names(
    question: str, known: Callable[[list[str]], dict[str, float]], translated: Collection[str] = ()
) -> list[str]:
    """The names, identifiers and titles of ``question`` that no chunk holds; ``known`` maps tokens to their idf (the
    keyword index's, which leaves out the tokens no chunk holds); ``translated``: the question's tokens that some
    chunk holds in translation. A name counts as present when each of its tokens is, as written or translated."""
    names = list(dict.fromkeys(latin_names(question) + titles(question) + identifiers(question)))
    if not names:
        return []
    tokens = {name: _lookup_tokens(name) for name in names}
    found = known(sorted({t for words in tokens.values() for t in words}))
    return [
        name for name, words in tokens.items()
        if words and any(t not in found and t not in translated for t in words)
    ]  # fmt: skip
