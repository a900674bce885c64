"""The router's featuriser: the ASCII path on bytes gives exactly what the regex path gives.

A router trained on one path and served on the other would route differently from what the
evaluation measured, so the two are compared on every prompt of the shared outcome sets (and on
edge cases), n-gram ids with their counts and the shape features alike.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from switchman.routing.features import FeatureParams, Vectorizer, ngrams, shape

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
if not DATA.exists():
    DATA = Path("/work/shared/data")
SETS = ("routerbench-3task", "routellm-mmlu-gsm8k", "zeroeval-gsm8k")

EDGES = [
    "", "a", "ab", "a b c", "x_y z_", "  leading and trailing  ", "3.5 + 1.25 = 4.75", "1.2.3.4 v2.0. 7..8 .5 5.",
    "tabs\tand\x0bvertical\x0cfeeds\r\nand \x1cfile\x1dgroup\x1erecord\x1funit separators",
    "UPPER lower MiXeD", "don't stop-believing (really) [now]!", "\x00nul\x01soh\x7fdel",
    "The answer is 42.\n\nQuestion: what is 6 * 7?\nAnswer:", "x" * 7000 + " tail words here",
    "héllo wörld", "naïve café 3,5 €",  # not ASCII: the regex path, checked the same way
]


def _reference(v: Vectorizer, text: str) -> tuple[Counter, np.ndarray]:
    """What the featuriser gave before the ASCII path: ngrams() and the dicts; the shape with
    the regex, str.split and str.count."""
    words, chars = ngrams(text, v.params)
    ids = Counter(i for i in map(v.words.get, words) if i is not None)
    ids.update(i for i in map(v.chars.get, chars) if i is not None)
    p = v.params
    full = len(text)
    if full > p.head_chars + p.tail_chars:
        text = text[: p.head_chars] + " " + text[-p.tail_chars:]
    n = len(text)
    ref = np.array([math.log1p(full), math.log1p(len(text.split())), math.log1p(text.count("\n")),
                    math.log1p(len(re.findall(r"\d+(?:\.\d+)?", text))),
                    sum(map(text.count, "0123456789")) / n if n else 0.0])
    return ids, ref


def _texts() -> list[str]:
    from switchman.outcomes import load_table

    out = []
    for s in SETS:
        f = DATA / s / "outcomes.jsonl.gz"
        if f.exists():
            out += [p.text for p in load_table([f]).prompts]
    return out


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    texts = _texts()
    if not texts:
        pytest.skip("the shared outcome data is not here")
    return texts


def test_ascii_path_equals_the_regex_path_on_every_prompt(corpus):
    # the vocabulary of a real router: fitted on a third of the prompts, so many n-grams are unknown
    v = Vectorizer.fit(corpus[::3], FeatureParams(head_chars=1500, tail_chars=1500))
    ascii_seen = 0
    for text in corpus + EDGES:
        ids, ref_shape = _reference(v, text)
        if text.isascii():
            ascii_seen += 1
            assert Counter(v._ascii_ids(text).tolist()) == ids, text[:120]
        assert np.array_equal(shape(text, v.params), ref_shape), text[:120]
        idx, val = v.transform_one(text)
        k = len(idx) - len(v.shape_mean)
        assert dict(zip(idx[:k].tolist(), [1] * k)) == dict.fromkeys(ids, 1)  # the same n-grams, once each
    assert ascii_seen > 0.8 * len(corpus)  # the path under test is the common one


def test_pairs_skip_one_letter_words():
    v = Vectorizer.fit(["the cat sat", "the cat ran", "a cat sat on the mat", "cat cat"], FeatureParams(), min_df=1)
    got = Counter(v.vocab[i] for i in v._ascii_ids("The cat, a cat; THE CAT sat x on the mat"))
    # words of two letters or more: the cat cat the cat sat on the mat ("a" and "x" are skipped,
    # so "cat a cat" makes the pair "cat cat"); "cat the" is no pair of the vocabulary
    assert got == Counter({"the": 3, "cat": 3, "the cat": 2, "cat cat": 1, "cat sat": 1, "sat": 1, "on": 1,
                           "mat": 1, "sat on": 1, "on the": 1, "the mat": 1})


def test_pairs_whose_words_are_not_in_the_vocabulary_never_collide():
    # Only pairs in the vocabulary: their words are numbered beyond the vocabulary's size, and an
    # unknown word next to a known one must not make up a pair that is not there.
    v = Vectorizer(["xx yy", "zz ww"], np.ones(2), FeatureParams(shape_scale=0.0))
    for text in ("ww xx", "xx yy zz ww", "qq xx", "yy qq", "ww qq zz", "yy zz ww xx", "qq qq qq"):
        words, _ = ngrams(text, v.params)
        want = Counter(i for i in map(v.words.get, words) if i is not None)
        assert Counter(v._ascii_ids(text).tolist()) == want, text
