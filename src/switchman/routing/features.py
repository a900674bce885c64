"""Prompt features for the learned router: TF-IDF over a fixed vocabulary, numpy only.

The vocabulary (word 1- and 2-grams, optionally character n-grams of the prompt's end) is
chosen at training time by document frequency and stored with the router; at run time a prompt
becomes a sparse, L2-normalised vector ``(indices, values)`` with a dict lookup per n-gram, so a
decision costs well under a millisecond on one core with no model download.

Besides the n-grams, a few dense *shape* features (length in characters, words and lines, how
many numbers, the share of digits) are appended, standardised with the training prompts' mean
and spread: on GSM8K, where every prompt is the same kind of task, the problem's length and
count of numbers say more about its difficulty than its words do (CPT(50%) 37% → 32% in 5-fold
CV), and they cost microseconds.

Character n-grams of the prompt's tail (where few-shot prompts put the question) are available
but off by default: on routerbench-3task they cost 0.3 ms per decision and made routing worse.
The text is capped (head and tail) because featurising costs grow with the prompt's length.

ASCII prompts (nine in ten of the three outcome sets') take a path on bytes that gives the same
n-grams and shape: ``bytes.translate`` and ``split`` instead of the word regex, counts instead of
the number regex where the prompt has no decimals. Python's ``re`` scans about 30 ns a character
(56 µs for the word pattern over a 1,550-character prompt); the bytes path takes 18 µs, and a
bandit with ``router:`` decides in well under half the time (``benchmarks/adaptive.py``). Both
paths are checked equal on every prompt of the outcome sets (``tests/routing/test_features.py``).
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
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
SHAPE = ("log_chars", "log_words", "log_lines", "log_numbers", "digit_share")
SHAPE_CLIP = 5.0  # standard deviations

# The ASCII path's tables (see the module's doc): word characters lowered and everything else a
# space, as ``_WORD`` splits; whitespace as ``str.split`` sees it; digits and dots for numbers.
_WORDS_LOWER = bytes((ord(chr(c).lower()) if chr(c).isalnum() or c == 95 else 32) if c < 128 else c for c in range(256))
_SPACE_MARK = bytes(32 if chr(c).isspace() else 120 for c in range(256))
_NUMBER_MARK = bytes(48 if 48 <= c <= 57 else 46 if c == 46 else 32 for c in range(256))
_MARKED_NUMBER = re.compile(rb"0+(?:\.0+)?")


@dataclass(frozen=True, slots=True)
class FeatureParams:
    head_chars: int = 3000  # words are read from the first head_chars ...
    tail_chars: int = 3000  # ... and the last tail_chars characters
    char_tail: int = 0  # character n-grams over the last char_tail characters (0 = none)
    char_n: tuple[int, ...] = (3, 4, 5)
    word_bigrams: bool = True
    shape_scale: float = 0.3  # weight of the standardised shape features beside TF-IDF (0 = none)

    def to_dict(self) -> dict:
        return {
            "head_chars": self.head_chars,
            "tail_chars": self.tail_chars,
            "char_tail": self.char_tail,
            "char_n": list(self.char_n),
            "word_bigrams": self.word_bigrams,
            "shape_scale": self.shape_scale,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureParams":
        return cls(
            head_chars=int(d["head_chars"]),
            tail_chars=int(d["tail_chars"]),
            char_tail=int(d["char_tail"]),
            char_n=tuple(int(x) for x in d["char_n"]),
            word_bigrams=bool(d["word_bigrams"]),
            shape_scale=float(d["shape_scale"]),
        )


def shape(text: str, p: FeatureParams) -> np.ndarray:
    """The prompt's shape (see :data:`SHAPE`): cheap signs of what kind of task it is and how
    long a problem it poses. Counted over the capped text, like the n-grams, but for the length."""
    full = len(text)
    if full > p.head_chars + p.tail_chars:
        text = text[: p.head_chars] + " " + text[-p.tail_chars :]
    n = len(text)
    if text.isascii():
        b = text.encode("ascii")
        digits = n - len(b.translate(None, b"0123456789"))
        w = b.translate(_SPACE_MARK)  # a word starts where a non-space follows a space
        words = w.count(b" x") + (w[:1] == b"x")
        m = b.translate(_NUMBER_MARK)
        numbers = (m.count(b" 0") + m.count(b".0") + (m[:1] == b"0")) if b"0.0" not in m \
            else len(_MARKED_NUMBER.findall(m))  # digit runs, unless a dot may join two
    else:
        digits = sum(map(text.count, "0123456789"))
        words = len(text.split())
        numbers = len(_NUMBER.findall(text))
    return np.array(
        [
            math.log1p(full),
            math.log1p(words),
            math.log1p(text.count("\n")),
            math.log1p(numbers),
            digits / n if n else 0.0,
        ]
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
    """N-gram counts → sublinear TF × IDF → L2 norm, over a vocabulary fixed at training; then
    the standardised shape features in the last columns (when ``params.shape_scale`` > 0)."""

    def __init__(
        self,
        vocab: Sequence[str],
        idf: np.ndarray,
        params: FeatureParams,
        shape_mean: np.ndarray | None = None,
        shape_sd: np.ndarray | None = None,
    ) -> None:
        self.vocab = list(vocab)
        # stored character n-grams carry a "\x01" prefix; at run time each kind has its dict
        self.words = {t: i for i, t in enumerate(self.vocab) if not t.startswith("\x01")}
        self._ascii_tables()
        self.chars = {t[1:]: i for i, t in enumerate(self.vocab) if t.startswith("\x01")}
        self.idf = np.asarray(idf, dtype=np.float64)
        self.params = params
        k = len(SHAPE)
        self.shape_mean = np.zeros(k) if shape_mean is None else np.asarray(shape_mean, dtype=np.float64)
        sd = np.ones(k) if shape_sd is None else np.asarray(shape_sd, dtype=np.float64)
        self.shape_sd = np.where(sd > 0, sd, 1.0)
        self._shape_idx = np.arange(len(self.vocab), len(self.vocab) + k) if params.shape_scale else None

    @classmethod
    def fit(cls, texts: Iterable[str], params: FeatureParams, max_features: int = 50_000, min_df: int = 2) -> "Vectorizer":
        """Choose the vocabulary: the ``max_features`` n-grams found in most prompts (at least
        ``min_df``), with sklearn's smoothed IDF ``ln((1+n)/(1+df)) + 1``; and the shape
        features' mean and spread."""
        df: Counter[str] = Counter()
        shapes = []
        for t in texts:
            words, chars = ngrams(t, params)
            df.update(set(words))
            df.update({"\x01" + c for c in chars})
            shapes.append(shape(t, params))
        n = len(shapes)
        items = [(g, c) for g, c in df.items() if c >= min_df]
        items.sort(key=lambda x: (-x[1], x[0]))
        items = items[:max_features]
        vocab = [g for g, _ in items]
        idf = np.array([math.log((1 + n) / (1 + c)) + 1.0 for _, c in items])
        s = np.array(shapes) if shapes else np.zeros((1, len(SHAPE)))
        return cls(vocab, idf, params, s.mean(axis=0), s.std(axis=0))

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """The fitted state as plain arrays, for an ``.npz`` file read without pickle (the
        params travel in the file's JSON metadata). N-grams never hold a newline (whitespace is
        normalised), so one joined string keeps the vocabulary compact."""
        return {
            f"{prefix}vocab": np.frombuffer("\n".join(self.vocab).encode("utf-8"), dtype=np.uint8),
            f"{prefix}idf": self.idf.astype(np.float32),
            f"{prefix}shape_mean": self.shape_mean,
            f"{prefix}shape_sd": self.shape_sd,
        }

    @classmethod
    def from_arrays(cls, z, params: FeatureParams, prefix: str = "") -> "Vectorizer":
        """The inverse of :meth:`arrays`; a missing array raises ``KeyError``."""
        raw = z[f"{prefix}vocab"].tobytes().decode("utf-8")
        vocab = raw.split("\n") if raw else []
        return cls(vocab, z[f"{prefix}idf"].astype(np.float64), params, z[f"{prefix}shape_mean"], z[f"{prefix}shape_sd"])

    def __len__(self) -> int:
        """The number of columns: the vocabulary, then the shape features if any."""
        return len(self.vocab) + (len(SHAPE) if self._shape_idx is not None else 0)

    def transform_one(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, values)`` of one prompt's feature vector: normalised TF-IDF, then shape."""
        p = self.params
        if not p.char_tail and text.isascii():
            arr = self._ascii_ids(text)
        else:
            words, chars = ngrams(text, p)
            # map() keeps the per-n-gram work in C: this loop is most of a routing decision's time
            ids = list(map(self.words.get, words, repeat(-1)))
            if chars:
                ids += map(self.chars.get, chars, repeat(-1))
            arr = np.fromiter(ids, dtype=np.int64, count=len(ids))
            arr = arr[arr >= 0]
        if len(arr):
            # np.unique(arr, return_counts=True), in a third less time: sort, mark where runs start
            arr.sort()
            first = np.empty(len(arr), dtype=bool)
            first[0] = True
            np.not_equal(arr[1:], arr[:-1], out=first[1:])
            starts = np.flatnonzero(first)
            idx = arr[starts]
            tf = np.empty(len(starts))
            tf[:-1] = starts[1:] - starts[:-1]
            tf[-1] = len(arr) - starts[-1]
            val = np.log(tf)
            val += 1.0
            val *= self.idf[idx]
            val /= math.sqrt(float(val @ val))
        else:
            idx, val = np.zeros(0, dtype=np.int64), np.zeros(0)
        if self._shape_idx is None:
            return idx, val
        # clipped: a prompt far outside the training prompts' shapes must not swamp its words
        z = np.clip((shape(text, self.params) - self.shape_mean) / self.shape_sd, -SHAPE_CLIP, SHAPE_CLIP) * self.params.shape_scale
        return np.concatenate([idx, self._shape_idx]), np.concatenate([val, z])

    def _ascii_tables(self) -> None:
        """The ASCII path's lookups: every word of the vocabulary's ASCII 1- and 2-grams numbered
        ``k`` (``_wk``, bytes → k; a one-character token → -2, as ``_WORD`` skips those), its
        unigram's vocabulary id (``_uni[k]``, -1 if only in pairs), and the pairs as sorted codes
        ``k1 × (K + 1) + k2`` with their vocabulary ids; ``K`` is the unknown word's number."""
        wk: dict[bytes, int] = {}
        uni: list[int] = []
        pairs: list[tuple[int, int, int]] = []

        def num(w: bytes) -> int:
            k = wk.get(w)
            if k is None:
                k = wk[w] = len(uni)
                uni.append(-1)
            return k

        for t, i in self.words.items():
            if not t.isascii():
                continue
            parts = t.encode().split(b" ")
            if len(parts) == 1:
                uni[num(parts[0])] = i
            else:
                pairs.append((num(parts[0]), num(parts[1]), i))
        self._unknown = len(uni)
        self._stride = len(uni) + 1  # > every k, the unknown one's included: codes never collide
        uni.append(-1)
        wk.update({bytes([c]): -2 for c in range(128) if _WORDS_LOWER[c] != 32})
        self._wk = wk
        self._uni = np.array(uni, dtype=np.int64)
        coded = sorted((a * self._stride + b, i) for a, b, i in pairs)
        # a sentinel above every code, so a search never runs off the end
        self._pair_codes = np.array([c for c, _ in coded] + [2**62], dtype=np.int64)
        self._pair_ids = np.array([i for _, i in coded] + [-1], dtype=np.int64)

    def _ascii_ids(self, text: str) -> np.ndarray:
        """The vocabulary ids of an ASCII prompt's word 1- and 2-grams, with repeats, as
        :func:`ngrams` and the dicts would give them, on bytes and numpy."""
        p = self.params
        if len(text) > p.head_chars + p.tail_chars:
            text = text[: p.head_chars] + " " + text[-p.tail_chars :]
        toks = text.encode("ascii").translate(_WORDS_LOWER).split()
        w = np.fromiter(map(self._wk.get, toks, repeat(self._unknown)), dtype=np.int64, count=len(toks))
        w = w[w >= 0]  # the words _WORD finds, unknown ones numbered K
        ids = self._uni[w]
        ids = ids[ids >= 0]
        if p.word_bigrams and len(w) > 1:
            code = w[:-1] * self._stride + w[1:]
            pos = np.searchsorted(self._pair_codes, code)
            ids = np.concatenate([ids, self._pair_ids[pos[self._pair_codes[pos] == code]]])
        return ids

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
