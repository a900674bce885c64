"""Prompt features for the learned router: TF-IDF over a fixed vocabulary, numpy only.

The vocabulary (word 1- and 2-grams, optionally character n-grams of the prompt's end) is
chosen at training time by document frequency and stored with the router; at run time a prompt
becomes a sparse, L2-normalised vector ``(indices, values)`` with a dict lookup per n-gram, so a
decision costs well under a millisecond on one core with no model download.

Character n-grams of the prompt's tail (where few-shot prompts put the question) are available
but off by default: on routerbench-3task they cost 0.3 ms per decision and made routing worse.
The text is capped (head and tail) because featurising costs grow with the prompt's length.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from itertools import repeat
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

# sklearn's default token pattern: words of two or more word characters.
_WORD = re.compile(r"(?u)\b\w\w+\b")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class FeatureParams:
    head_chars: int = 3000  # words are read from the first head_chars ...
    tail_chars: int = 3000  # ... and the last tail_chars characters
    char_tail: int = 0  # character n-grams over the last char_tail characters (0 = none)
    char_n: tuple[int, ...] = (3, 4, 5)
    word_bigrams: bool = True

    def to_dict(self) -> dict:
        return {
            "head_chars": self.head_chars,
            "tail_chars": self.tail_chars,
            "char_tail": self.char_tail,
            "char_n": list(self.char_n),
            "word_bigrams": self.word_bigrams,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureParams":
        return cls(
            head_chars=int(d["head_chars"]),
            tail_chars=int(d["tail_chars"]),
            char_tail=int(d["char_tail"]),
            char_n=tuple(int(x) for x in d["char_n"]),
            word_bigrams=bool(d["word_bigrams"]),
        )


def ngrams(text: str, p: FeatureParams) -> tuple[list[str], list[str]]:
    """The n-grams of ``text`` the featuriser counts (with repeats): word 1- and 2-grams, and
    character n-grams of the tail. The two kinds are kept apart so that they never collide."""
    if len(text) > p.head_chars + p.tail_chars:
        text = text[: p.head_chars] + " " + text[-p.tail_chars :]
    low = text.lower()
    words = _WORD.findall(low)
    if p.word_bigrams and len(words) > 1:
        words += list(map(" ".join, zip(words, words[1:])))
    chars: list[str] = []
    if p.char_tail:
        tail = _SPACES.sub(" ", low[-p.char_tail :])
        for n in p.char_n:
            chars += [tail[i : i + n] for i in range(len(tail) - n + 1)]
    return words, chars


class Vectorizer:
    """N-gram counts → sublinear TF × IDF → L2 norm, over a vocabulary fixed at training."""

    def __init__(self, vocab: Sequence[str], idf: np.ndarray, params: FeatureParams) -> None:
        self.vocab = list(vocab)
        # stored character n-grams carry a "\x01" prefix; at run time each kind has its dict
        self.words = {t: i for i, t in enumerate(self.vocab) if not t.startswith("\x01")}
        self.chars = {t[1:]: i for i, t in enumerate(self.vocab) if t.startswith("\x01")}
        self.idf = np.asarray(idf, dtype=np.float64)
        self.params = params

    @classmethod
    def fit(cls, texts: Iterable[str], params: FeatureParams, max_features: int = 50_000, min_df: int = 2) -> "Vectorizer":
        """Choose the vocabulary: the ``max_features`` n-grams found in most prompts (at least
        ``min_df``), with sklearn's smoothed IDF ``ln((1+n)/(1+df)) + 1``."""
        df: Counter[str] = Counter()
        n = 0
        for t in texts:
            words, chars = ngrams(t, params)
            df.update(set(words))
            df.update({"\x01" + c for c in chars})
            n += 1
        items = [(g, c) for g, c in df.items() if c >= min_df]
        items.sort(key=lambda x: (-x[1], x[0]))
        items = items[:max_features]
        vocab = [g for g, _ in items]
        idf = np.array([math.log((1 + n) / (1 + c)) + 1.0 for _, c in items])
        return cls(vocab, idf, params)

    def __len__(self) -> int:
        return len(self.vocab)

    def transform_one(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, values)`` of one prompt's normalised TF-IDF vector."""
        words, chars = ngrams(text, self.params)
        # map() keeps the per-n-gram work in C: this loop is most of a routing decision's time
        ids = list(map(self.words.get, words, repeat(-1)))
        if chars:
            ids += map(self.chars.get, chars, repeat(-1))
        arr = np.fromiter(ids, dtype=np.int64, count=len(ids))
        arr = arr[arr >= 0]
        if not len(arr):
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        idx, tf = np.unique(arr, return_counts=True)
        val = (1.0 + np.log(tf)) * self.idf[idx]
        val /= math.sqrt(float(val @ val))
        return idx, val

    def transform_csr(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Many prompts as CSR arrays ``(indptr, indices, data)`` (for training)."""
        indptr = [0]
        inds: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        for t in texts:
            i, v = self.transform_one(t)
            inds.append(i)
            vals.append(v)
            indptr.append(indptr[-1] + len(i))
        return (
            np.asarray(indptr, dtype=np.int64),
            np.concatenate(inds) if inds else np.zeros(0, dtype=np.int64),
            np.concatenate(vals) if vals else np.zeros(0),
        )
