"""Counting tokens locally, for the ledger entries of streams that ended without the upstream's
final usage (a cut stream, a client that went away, a server that ignores ``include_usage``).

The tokenizer is OpenAI's ``o200k_base`` (GPT-4o, GPT-4.1, GPT-5, the o-series) run by tiktoken,
with its BPE ranks shipped beside this module (``o200k_base.tiktoken.gz``, byte-identical to the
file OpenAI publishes, sha256 ``446a9538...1a2d`` as pinned by tiktoken; MIT, see
``o200k_base.LICENSE``), because tiktoken would otherwise download it at run time. It is exact for
those models and the closest tokenizer available offline for the others (Anthropic's and
Google's are not published): unlike 4 characters a token it stays close on code, JSON and
non-English text (``benchmarks/tokens.py`` has the figures).

Nothing is imported or loaded until the first count: a worker that never meets such a stream pays
nothing. Then loading takes about 0.35 s and leaves about 48 MB (tiktoken's Rust ``CoreBPE`` is
used directly, so the ranks are not also kept as a Python dict, which would double that), and
``count_later`` counts in a thread (tiktoken releases the GIL), never on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import threading
from functools import cache
from importlib import resources

_RANKS = "o200k_base.tiktoken.gz"
# tiktoken_ext/openai_public.py, o200k_base(): the pre-tokenizer the ranks were trained with.
_PATTERN = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])


_LOADING = threading.Lock()


def _encoder():
    # The first counts often come in a burst, each in its own worker thread: without the lock every
    # thread built its own encoder at once (soak: RSS 34 -> 300 MB in 3 s, kept by the allocator).
    with _LOADING:
        return _load()


@cache
def _load():
    from tiktoken._tiktoken import CoreBPE  # what tiktoken.Encoding wraps, without its copy of the ranks

    data = gzip.decompress(resources.files(__package__).joinpath(_RANKS).read_bytes())
    ranks = {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in data.splitlines() if line)}
    return CoreBPE(ranks, {}, _PATTERN)


def count(text: str) -> int:
    """Tokens in ``text`` (special-token strings count as the plain text they are)."""
    return len(_encoder().encode_ordinary(text)) if text else 0


async def count_later(*texts: str) -> list[int]:
    """``count`` of each text, in a worker thread."""
    return await asyncio.to_thread(lambda: [count(t) for t in texts])
