"""What a fake model does when it behaves like a model (``FakeModel(behave=True)``, the demo
fleet's): enough for ``parse()``, instructor and an agent loop to run end to end against it.

- Structured output asked for (OpenAI ``response_format`` json_schema or json_object, Anthropic
  ``output_config.format``, Gemini ``generationConfig.responseJsonSchema``/``responseSchema``):
  the answer is a JSON instance of the schema, built from it (``instance``).
- Tools offered: a call of the tool (the one ``tool_choice`` names, else the first) with arguments
  built from that tool's parameter schema; but once the conversation's last turn is a tool result,
  a final text answer instead, so an agent loop ends.
"""

from __future__ import annotations

from typing import Any

_EXAMPLES = {"date": "2026-01-01", "date-time": "2026-01-01T12:00:00Z", "email": "someone@example.com",
             "uri": "https://example.com", "uuid": "00000000-0000-4000-8000-000000000000", "time": "12:00:00"}


def instance(schema: Any, root: Any = None, depth: int = 0) -> Any:
    """A value valid against ``schema`` (the JSON Schema subset models are given: types, properties,
    required, items, enum, const, anyOf/oneOf/allOf, $ref into $defs/definitions, min/max)."""
    root = schema if root is None else root
    if depth > 12 or not isinstance(schema, dict):
        return None
    if "$ref" in schema:
        ref = schema["$ref"]
        target: Any = root
        for part in ref.lstrip("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return instance(target, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            opts = [o for o in schema[key] if not (isinstance(o, dict) and o.get("type") == "null")]
            return instance((opts or schema[key])[0], root, depth + 1)
    if schema.get("allOf"):
        merged: dict = {}
        for part in schema["allOf"]:
            if isinstance(part, dict):
                merged.update(part)
        return instance(merged, root, depth + 1)
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "null")
    if t is None:
        t = "object" if "properties" in schema else "string"
    t = t.lower() if isinstance(t, str) else t  # Gemini's responseSchema spells them OBJECT, STRING
    if t == "object":
        props = schema.get("properties") or {}
        return {k: instance(v, root, depth + 1) for k, v in props.items()}
    if t == "array":
        n = max(1, int(schema.get("minItems", 1)))
        return [instance(schema.get("items") or {}, root, depth + 1) for _ in range(n)]
    if t == "integer":
        lo = schema.get("minimum")
        if lo is None and "exclusiveMinimum" in schema:
            lo = schema["exclusiveMinimum"] + 1
        return int(lo if lo is not None else 1)
    if t == "number":
        return float(schema.get("minimum", 1.0))
    if t == "boolean":
        return True
    if t == "null":
        return None
    s = _EXAMPLES.get(schema.get("format", ""), "example")
    return s.ljust(int(schema.get("minLength", 0)), "x")


def answer_schema(body: dict, wire: str) -> tuple[bool, Any]:
    """(JSON asked for, its schema or None) of a request body on ``wire``."""
    if wire == "responses":
        fmt = (body.get("text") or {}).get("format") or {}
        return fmt.get("type") in ("json_schema", "json_object"), fmt.get("schema")
    if wire in ("openai", "azure"):
        rf = body.get("response_format") or {}
        if rf.get("type") == "json_schema":
            return True, (rf.get("json_schema") or {}).get("schema")
        return rf.get("type") == "json_object", None
    if wire == "anthropic":
        fmt = ((body.get("output_config") or {}).get("format") or body.get("output_format") or {})
        return fmt.get("type") == "json_schema", fmt.get("schema")
    gc = body.get("generationConfig") or {}
    schema = gc.get("responseJsonSchema") or gc.get("responseSchema")
    return gc.get("responseMimeType") == "application/json" or schema is not None, schema


def after_tool_result(body: dict, wire: str) -> bool:
    """Whether the conversation's last turn is a tool's result (so the model should now answer)."""
    if wire == "responses":
        items = body.get("input")
        return isinstance(items, list) and bool(items) and isinstance(items[-1], dict) and \
            items[-1].get("type") == "function_call_output"
    if wire in ("openai", "azure"):
        msgs = body.get("messages") or []
        return bool(msgs) and isinstance(msgs[-1], dict) and msgs[-1].get("role") == "tool"
    if wire == "anthropic":
        msgs = body.get("messages") or []
        last = msgs[-1] if msgs and isinstance(msgs[-1], dict) else {}
        c = last.get("content")
        return isinstance(c, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in c)
    contents = body.get("contents") or []
    last = contents[-1] if contents and isinstance(contents[-1], dict) else {}
    return any(isinstance(p, dict) and "functionResponse" in p for p in last.get("parts") or ())


def forced(body: dict, wire: str) -> bool:
    """Whether the request obliges the model to call a tool."""
    if wire == "responses":
        c = body.get("tool_choice")
        return c == "required" or isinstance(c, dict)
    if wire in ("openai", "azure"):
        c = body.get("tool_choice")
        return c == "required" or isinstance(c, dict)
    if wire == "anthropic":
        return ((body.get("tool_choice") or {}).get("type")) in ("any", "tool")
    return ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode") == "ANY"


def tool_schema(body: dict, wire: str, name: str) -> Any:
    """The parameter schema of the tool called ``name`` in a request body."""
    if wire == "responses":
        for t in body.get("tools") or ():
            if isinstance(t, dict) and t.get("type") == "function" and t.get("name") == name:
                return t.get("parameters")
        return None
    if wire in ("openai", "azure"):
        for t in body.get("tools") or ():
            fn = (t or {}).get("function") or {}
            if fn.get("name") == name:
                return fn.get("parameters")
    elif wire == "anthropic":
        for t in body.get("tools") or ():
            if (t or {}).get("name") == name:
                return t.get("input_schema")
    else:
        for t in body.get("tools") or ():
            for f in (t or {}).get("functionDeclarations") or ():
                if f.get("name") == name:
                    return (f.get("parametersJsonSchema") or f.get("parameters_json_schema")  # the SDK sends either
                            or f.get("parameters"))
    return None
