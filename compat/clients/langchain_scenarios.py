"""The scenarios both langchain clients run: invoke, stream, ``bind_tools`` with a hand-run tool loop,
``with_structured_output``, ``ainvoke``/``astream``."""

from __future__ import annotations

from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool

from _common import City, check


ASK = "What is the capital of France?"


def scenarios(make):
    def plain(model):
        m = make(model).invoke(ASK)
        check(m.text, "empty answer")
        check(m.usage_metadata and m.usage_metadata["output_tokens"] > 0, "no usage_metadata")

    def stream(model):
        pieces = [c.text for c in make(model).stream(ASK) if c.text]
        check(len(pieces) > 1, f"{len(pieces)} text chunks")

    def tools(model):
        calls = []

        @tool
        def get_weather(city: str) -> str:
            """The current weather in a city."""
            calls.append(city)
            return f"sunny, 21 C in {city}"

        llm = make(model).bind_tools([get_weather])
        msgs = [HumanMessage("What is the weather in Paris?")]
        for _ in range(4):
            ai = llm.invoke(msgs)
            msgs.append(ai)
            if not ai.tool_calls:
                check(calls, "answered without calling the tool")
                check(ai.text, "no final text")
                return
            msgs += [ToolMessage(get_weather.invoke(tc["args"]), tool_call_id=tc["id"]) for tc in ai.tool_calls]
        check(False, "no final answer after 4 turns")

    def structured(model):
        out = make(model).with_structured_output(City).invoke("Describe Paris.")
        check(isinstance(out, City), f"got {type(out).__name__}, not City")

    async def async_(model):
        llm = make(model)
        m = await llm.ainvoke(ASK)
        check(m.text, "empty answer")
        check(len([c async for c in llm.astream(ASK) if c.text]) > 1, "async stream: no chunks")

    return plain, stream, tools, structured, async_
