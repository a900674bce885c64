"""Local token counts for streams that ended without usage: OpenAI's o200k_base, shipped, offline."""

from __future__ import annotations

import gzip
import hashlib
from importlib import resources

import tiktoken.load

from switchman import tokens


def test_the_shipped_ranks_are_openais_o200k_base():
    data = gzip.decompress(resources.files("switchman").joinpath("o200k_base.tiktoken.gz").read_bytes())
    # the hash tiktoken pins for https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken
    assert hashlib.sha256(data).hexdigest() == "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"


def test_counts_without_any_network(monkeypatch):
    def no_network(*_a, **_k):
        raise AssertionError("tiktoken tried to download its ranks")

    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    monkeypatch.setattr(tiktoken.load, "read_file_cached", no_network)
    tokens._load.cache_clear()
    assert tokens.count("hello world") == 2
    assert tokens.count("") == 0
    # where 4 characters a token is far off: Chinese (about 1.3 characters a token) and JSON
    zh = "政府周三决定明年大幅扩大对可再生能源的支持。"
    assert tokens.count(zh) == 17 and len(zh) // 4 == 5
