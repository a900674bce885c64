"""langchain-openai: ``ChatOpenAI`` on Chat Completions and with ``use_responses_api=True``."""

from __future__ import annotations

from langchain_openai import ChatOpenAI

from _common import KEY, OPENAI_BASE, each, finish
from langchain_scenarios import scenarios

ROWS = {
    "langchain-openai · ChatOpenAI": lambda m: ChatOpenAI(model=m, base_url=OPENAI_BASE, api_key=KEY, max_retries=0,
                                                         timeout=20),
    "langchain-openai · ChatOpenAI(use_responses_api)": lambda m: ChatOpenAI(
        model=m, base_url=OPENAI_BASE, api_key=KEY, max_retries=0, timeout=20, use_responses_api=True),
}
for row, make in ROWS.items():
    for col, fn in zip(("plain", "stream", "tools", "structured", "async"), scenarios(make)):
        each(row, col, fn)
finish()
