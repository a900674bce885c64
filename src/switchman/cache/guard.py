"""What must never be a semantic hit, however close the vectors: two prompts that differ in a
number or in polarity. Embeddings put "enable 2FA" and "disable 2FA" at cosine 0.91 (MiniLM, and
0.82 in vllm-project/semantic-router#2691), "$40" and "$400" closer still; no threshold separates
them from true paraphrases, so the cache compares the words that carry them.

- Numbers: the sets of numbers (digits, with their decimals, and the number words from two up) must
  match.
- Negation: both negated (not, no, never, without, n't ...) or neither.
- Entities: a name in one prompt (a capitalised word not opening a sentence, or a word with a
  digit or inner capital) swapped for another name in the other ("about France" against "about
  Germany"); a name only added or dropped is allowed, paraphrases do that.
- Polarity: a word in one prompt whose opposite is in the other, by a list of antonym pairs
  (enable/disable, add/remove, increase/decrease ...) or by a negating prefix (lock/unlock,
  connect/disconnect, activate/deactivate, able/unable, ...).
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?|\d+(?:[.,]\d+)*")
_NUMBER_WORDS = {"zero": "0", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
                 "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
                 "twenty": "20", "thirty": "30", "forty": "40", "fifty": "50", "hundred": "100",
                 "thousand": "1000", "million": "1e6", "billion": "1e9"}
_NEGATIONS = frozenset(("not", "no", "never", "without", "none", "nor", "cannot", "neither", "nobody", "nothing",
                        "nowhere", "don't", "doesn't", "didn't", "isn't", "aren't", "wasn't", "weren't", "won't",
                        "can't", "couldn't", "shouldn't", "wouldn't", "haven't", "hasn't", "hadn't", "mustn't"))
_PAIRS = [
    ("enable", "disable"), ("on", "off"), ("add", "remove"), ("increase", "decrease"), ("allow", "deny"),
    ("allow", "block"), ("start", "stop"), ("open", "close"), ("before", "after"), ("min", "max"),
    ("minimum", "maximum"), ("up", "down"), ("true", "false"), ("yes", "no"), ("include", "exclude"),
    ("encrypt", "decrypt"), ("import", "export"), ("buy", "sell"), ("upload", "download"), ("show", "hide"),
    ("more", "less"), ("higher", "lower"), ("high", "low"), ("first", "last"), ("accept", "reject"),
    ("positive", "negative"), ("above", "below"), ("over", "under"), ("increase", "reduce"), ("join", "leave"),
    ("grant", "revoke"), ("push", "pull"), ("input", "output"), ("inside", "outside"), ("internal", "external"),
    ("public", "private"), ("best", "worst"), ("better", "worse"), ("fast", "slow"), ("faster", "slower"),
    ("large", "small"), ("larger", "smaller"), ("big", "small"), ("long", "short"), ("new", "old"),
    ("win", "lose"), ("pass", "fail"), ("success", "failure"), ("send", "receive"), ("read", "write"),
    ("left", "right"), ("north", "south"), ("east", "west"), ("morning", "evening"), ("today", "tomorrow"),
    ("yesterday", "today"), ("cheap", "expensive"), ("cheapest", "most"), ("hot", "cold"), ("always", "sometimes"),
    ("create", "delete"), ("insert", "delete"), ("attach", "detach"), ("mount", "unmount"), ("love", "hate"),
    ("like", "dislike"), ("agree", "disagree"), ("legal", "illegal"), ("safe", "unsafe"), ("male", "female"),
    ("he", "she"), ("his", "her"), ("men", "women"), ("man", "woman"), ("boy", "girl"), ("asc", "desc"),
    ("ascending", "descending"), ("sync", "async"), ("synchronous", "asynchronous"),
]
_OPPOSITE: dict[str, set[str]] = {}
for _a, _b in _PAIRS:
    for _x, _y in ((_a, _b), (_b, _a)):
        for sx, sy in (("", ""), ("s", "s"), ("d", "d"), ("ed", "ed"), ("ing", "ing")):
            _OPPOSITE.setdefault(_x + sx, set()).add(_y + sy)
_PREFIXES = ("un", "dis", "de", "in", "im", "il", "ir", "non", "anti", "mis")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def _numbers(ws: list[str]) -> set[str]:
    return set(w.replace(",", "") if w[0].isdigit() else _NUMBER_WORDS[w] for w in ws
                   if w[0].isdigit() or w in _NUMBER_WORDS)


def _negated(ws: list[str]) -> bool:
    return any(w in _NEGATIONS or w.endswith("n't") for w in ws)


def _opposed(a: set[str], b: set[str]) -> str | None:
    for w in a - b:
        for o in _OPPOSITE.get(w, ()):
            if o in b and o not in a:
                return f"{w}/{o}"
        for p in _PREFIXES if len(w) >= 4 else ():
            if p + w in b and p + w not in a:
                return f"{w}/{p + w}"
            if w.startswith(p) and len(w) > len(p) + 2 and w[len(p):] in b and w[len(p):] not in a:
                return f"{w}/{w[len(p):]}"
    return None


_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b([A-Z][\w-]*|\w*[a-z][A-Z]\w*)")


def names(text: str) -> set[str]:
    return {m.lower().removesuffix("'s") for m in _NAME.findall(text.strip().replace("\u2019", "'")) if len(m) > 1}


def conflict(a: str, b: str) -> str | None:
    """Why prompts ``a`` and ``b`` must not share an answer (None: nothing found)."""
    wa, wb = words(a), words(b)
    if _numbers(wa) != _numbers(wb):
        return "the numbers differ"
    if _negated(wa) != _negated(wb):
        return "one is negated"
    na, nb = names(a), names(b)
    if na - nb and nb - na and not (na - nb) <= set(wb) and not (nb - na) <= set(wa):
        return f"a name differs ({sorted(na - nb)[0]}/{sorted(nb - na)[0]})"
    sa, sb = set(wa), set(wb)
    why = _opposed(sa, sb)
    return f"opposite words ({why})" if why else None
