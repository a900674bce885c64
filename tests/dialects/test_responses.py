"""Decoding the Responses API into the canonical request: items, tools, formats, and what only an
OpenAI Responses upstream may be sent."""

from __future__ import annotations

import pytest

from switchman.dialects.responses import decode
from switchman.errors import Unsupported
from switchman.types import ImagePart, Role, TextPart, ToolCallPart, ToolResultPart


def test_items_become_one_conversation_with_calls_and_results_in_their_turns():
    req = decode({"model": "m", "instructions": "sys", "input": [
        {"role": "developer", "content": "dev rules"},
        {"role": "user", "content": [{"type": "input_text", "text": "look"},
                                     {"type": "input_image", "image_url": "data:image/png;base64,iVBOR", "detail": "low"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "calling"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{\"a\":1}"},
        {"type": "function_call_output", "call_id": "c1", "output": "one"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "two"}]},
        {"role": "user", "content": "thanks"},
    ]})
    assert [p.text for p in req.system] == ["sys", "dev rules"]
    assert [m.role for m in req.messages] == [Role.USER, Role.ASSISTANT, Role.USER]
    assert type(req.messages[0].parts[1]) is ImagePart and req.messages[0].parts[1].media_type == "image/png"
    assert [type(p) for p in req.messages[1].parts] == [TextPart, ToolCallPart, ToolCallPart]
    results = req.messages[2].parts
    assert [(type(p), getattr(p, "tool_call_id", None)) for p in results] == [
        (ToolResultPart, "c1"), (ToolResultPart, "c2"), (TextPart, None)]
    assert req.native_only is None, "a reasoning item is left out toward other upstreams, not refused"


@pytest.mark.parametrize("body,native", [
    ({"tools": [{"type": "web_search"}]}, "tools[0] (web_search)"),
    ({"tools": [{"type": "function", "name": "f"}, {"type": "code_interpreter", "container": {"type": "auto"}}]},
     "tools[1] (code_interpreter)"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
     "input[0].content[0] (input_file)"),
    ({"input": [{"type": "web_search_call", "id": "ws", "status": "completed"}, {"role": "user", "content": "x"}]},
     "input[0] (web_search_call)"),
    ({"prompt": {"id": "pmpt_1"}}, "prompt"),
    ({"some_new_field": 1}, "some_new_field"),
    ({"tool_choice": {"type": "web_search"}, "tools": [{"type": "web_search"}]}, "tools[0] (web_search)"),
])
def test_what_only_openai_can_run_is_marked_native_never_dropped(body, native):
    req = decode({"model": "m", "input": "hello", **body} if "input" not in body else {"model": "m", **body})
    assert req.native_only == native


def test_text_format_and_tool_choice_map_to_the_canonical_request():
    req = decode({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f", "strict": True,
                                                         "parameters": {"type": "object"}}],
                  "tool_choice": {"type": "function", "name": "f"}, "parallel_tool_calls": False,
                  "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}}})
    assert req.response_format == {"type": "json_schema",
                                   "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": True}}
    assert (req.tool_choice.mode, req.tool_choice.name, req.tool_choice.parallel) == ("tool", "f", False)
    assert req.tools[0].strict is True


def test_refused_outright():
    with pytest.raises(Unsupported) as e:
        decode({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]})
    assert e.value.param == "input[0].type"
    with pytest.raises(Unsupported) as e:
        decode({"model": "m", "input": "x", "conversation": "conv_1"})
    assert e.value.param == "conversation"


def test_an_explicit_prompt_cache_breakpoint_becomes_the_canonical_cache_marker():
    req = decode({"model": "m", "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "long shared prefix", "prompt_cache_breakpoint": {"mode": "explicit", "ttl": "12h"}},
        {"type": "input_text", "text": "question", "prompt_cache_breakpoint": {"mode": "explicit"}},
        {"type": "input_text", "text": "unmarked"}]}]})
    assert [p.cache_control for p in req.messages[0].parts] == [
        {"type": "ephemeral", "ttl": "1h"}, {"type": "ephemeral"}, None]
    assert req.native_only is None
