"""langchain-anthropic: ``ChatAnthropic`` pointed at the gateway's Messages API: invoke, stream, ``bind_tools``
with a hand-run tool loop, ``with_structured_output``, ``ainvoke``/``astream``."""

from __future__ import annotations

from langchain_anthropic import ChatAnthropic

from _common import BASE, KEY, each, finish
from langchain_scenarios import scenarios


def make(model):
    return ChatAnthropic(model=model, base_url=BASE, api_key=KEY, max_retries=0, timeout=20, max_tokens=400)


for col, fn in zip(("plain", "stream", "tools", "structured", "async"), scenarios(make)):
    each("langchain-anthropic · ChatAnthropic", col, fn)
finish()
