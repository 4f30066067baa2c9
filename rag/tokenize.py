"""Keyword tokens for mixed Chinese/English text (BM25 side of hybrid search).

Chinese has no spaces, so words come from jieba; jieba's dictionary is simplified Chinese and its segmentation can
differ between a question and a passage, so every run of CJK characters also contributes its character bigrams.
That makes traditional Chinese and unknown terms match too. English words are lower-cased with a light plural
strip. Stop words of both languages are dropped so that scores come from content words.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata

from rag.language import HAN, HANGUL, KANA

# Bump whenever keyword_tokens() changes its output (stop lists, plural rule, segmentation): indexes built with
# another version are rebuilt from the chunk texts, since stored tokens would no longer match the queries' tokens.
TOKENIZER_VERSION = "3"  # 2: kana and Hangul bigrams; 3: traditional characters folded to simplified

_HAN_RUN = re.compile(f"[{HAN}]+")
_KANA_HANGUL_RUN = re.compile(f"[{KANA}{HANGUL}]+")
_HAS_CJK = re.compile(f"[{HAN}{KANA}{HANGUL}]")
_LATIN_WORD = re.compile(r"[^\W_]+", re.UNICODE)

EN_STOP = frozenset(
    """a an and are as at be by can do does did for from has have how i if in into is it its of on or so such that
    the their then there these this to was were what when where which who whom why will with you your we our they
    he she them his her not no yes than too very just also about""".split()
)
ZH_STOP = frozenset(
    """的 了 是 在 和 与 及 或 也 都 就 而 被 把 对 从 到 为 以 于 之 其 这 那 这个 那个 一个 什么 哪 哪些
    哪个 怎么 怎样 如何 多少 吗 呢 吧 啊 么 有 没有 个 中 上 下 等 我 你 他 她 它 我们 你们 他们 請問 请问
    是否 还是 可以 会 能""".split()
)


@functools.lru_cache(maxsize=1)
def _to_simplified() -> dict[int, str]:
    """Traditional -> simplified, one character at a time (OpenCC's table, first choice): 預設的檢索數量 and
    预设的检索数量 then share their words and bigrams. Characters with several simplified forms keep the first."""
    import importlib.resources

    table: dict[int, str] = {}
    text = importlib.resources.files("opencc").joinpath("dictionary/TSCharacters.txt").read_text(encoding="utf-8")
    for line in text.splitlines():
        source, _, targets = line.partition("\t")
        target = targets.split(" ")[0] if targets else ""
        if len(source) == 1 and len(target) == 1 and source != target:
            table[ord(source)] = target
    return table


def to_simplified(text: str) -> str:
    return text.translate(_to_simplified())


@functools.lru_cache(maxsize=1)
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def _bigrams(run: str) -> list[str]:
    """Character bigrams; a lone kana is a particle (は, の) and carries no meaning on its own."""
    return [run[i : i + 2] for i in range(len(run) - 1)]


def _latin_tokens(text: str) -> list[str]:
    out = []
    for run in _KANA_HANGUL_RUN.finditer(text):  # Japanese kana and Korean: character bigrams, like Chinese
        out.extend(_bigrams(run.group()))
    text = _KANA_HANGUL_RUN.sub(" ", text)
    for word in _LATIN_WORD.findall(text.lower()):
        if word in EN_STOP or _HAS_CJK.search(word):
            continue
        if len(word) > 4 and word.endswith("ies"):
            word = word[:-3] + "y"
        elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.append(word)
    return out


def keyword_tokens(text: str) -> list[str]:
    """Tokens for BM25; the same function serves passages and queries."""
    text = unicodedata.normalize("NFKC", text)
    tokens: list[str] = []
    last = 0
    for run in _HAN_RUN.finditer(text):
        tokens.extend(_latin_tokens(text[last : run.start()]))
        last = run.end()
        chars = to_simplified(run.group())
        tokens.extend(w for w in _jieba().lcut_for_search(chars) if w not in ZH_STOP)
        tokens.extend(chars[i : i + 2] for i in range(len(chars) - 1))
    tokens.extend(_latin_tokens(text[last:]))
    return tokens
