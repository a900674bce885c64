"""``benchmarks/RESULTS.md`` is one file of sections, one per benchmark script, each between
``<!-- NAME:begin -->`` and ``<!-- NAME:end -->``: a script rewrites its own and keeps the rest."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, name: str, text: str) -> None:
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{text.rstrip(chr(10))}\n{end}\n"
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    if begin in old and end in old:
        head, _, rest = old.partition(begin)
        _, _, tail = rest.partition(end)
        new = head + block + ("\n" + tail.lstrip("\n") if tail.strip() else "")
    else:
        new = old.rstrip("\n") + "\n\n" + block
    path.write_text(new, encoding="utf-8")
