"""What can be read off an answer without asking a model: whether the calculations it shows
are right, whether it ends in a marked final answer, and what that answer is (to compare two
models' answers).

A worked answer states its steps (``3 * 20 = 60``, or GSM8K's calculator notes
``<<3*20=60>>``); a step whose result is wrong is the cheapest sign there is that the answer is
wrong (on GSM8K, the 7% of Mixtral's answers with a wrong step are right 10% of the time, the
others 68%: ``benchmarks/RESULTS.md``). Each step is evaluated with a tiny parser of numbers,
``+ - * / x × ÷`` and brackets (never ``eval``), in one linear pass over the text; a result
rounded to the digits it shows counts as right, and so does a share written as a percentage.
"""

from __future__ import annotations

import ast
import operator
import re

# One pass over the text, token by token (no backtracking, linear in the answer's length): a
# number (with $ , . %), an operator, a bracket, "=", the "<<" ">>" of a calculator note, a
# newline, or any other word, which ends a run of arithmetic.
_TOKEN = re.compile(r"(\$?\d[\d,]*(?:\.\d+)?%?)|([-+*/×÷()=])|(x)(?=\s*\$?\d)|(\n|<<|>>|\\\*|[^\s\d$+\-*/×÷()=<>\\]+|\S)")
_FINAL = re.compile(r"####\s*\$?-?\d|\\boxed\{|\b(?:final answer|the answer is|answer:)", re.IGNORECASE)
# What an answer settles on: the number after a final-answer mark, or a lone option letter at
# its start ("B", "(B) ...", "Answer: B").
_FINAL_NUMBER = re.compile(r"(?:####|\\boxed\{|final answer(?: is)?:?|the answer is:?)\s*\$?\s*(-?[\d,]*\.?\d+)", re.IGNORECASE)
_OPTION = re.compile(r"^\W*(?:answer:?\s*)?\(?([A-J])(?=[).:\]\"]|'(?!\w)|\s*$|\s*\n|\\n)", re.IGNORECASE)
_NONWORD = re.compile(r"\W+")
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _value(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _value(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_value(node.left), _value(node.right))
    raise ValueError("not arithmetic")


def evaluate(expr: str) -> float | None:
    """The value of a plain arithmetic expression (``x``, ``×``, ``÷``, ``$``, ``,`` and ``%``
    understood), or None when it is not one."""
    e = expr.replace(",", "").replace("$", "").replace("×", "*").replace("÷", "/").replace("x", "*")
    e = re.sub(r"(\d+(?:\.\d+)?)%", r"(\1/100)", e)
    if len(e) > 200 or not re.fullmatch(r"[\d.\s()+\-*/]+", e):
        return None
    try:
        return _value(ast.parse(e.strip(), mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError):
        return None


def _number(s: str) -> tuple[float, int] | None:
    s = s.strip().replace(",", "").replace("$", "").rstrip(".")
    m = re.match(r"-?\d+(?:\.(\d+))?", s)
    if not m:
        return None
    return float(m.group(0)), len(m.group(1) or "")


def _agrees(value: float, stated: float, decimals: int, percent: bool) -> bool:
    """``stated`` is ``value``, or ``value`` rounded (either way) to the digits it shows; with
    a ``%`` in the calculation, also ``value`` as a percentage."""
    for v in (value, value * 100) if percent else (value,):
        if abs(v - stated) <= 1e-9 * max(1.0, abs(v)) or abs(v - stated) < 10.0 ** -decimals:
            return True
    return False


def _runs(text: str):
    """Runs of arithmetic tokens, each a list of strings, split at anything else. A run that
    an operator joins to a word before it (``x * 4 + 8 = 40``) is algebra, and skipped."""
    run: list[str] = []
    skip = False
    for m in _TOKEN.finditer(text):
        num, op, times, other = m.groups()
        if other == "\\*":  # markdown-escaped multiplication
            other, op = None, "*"
        if other is not None:
            if run:
                yield run
            run, skip = [], False
        elif run:
            run.append(num or op or times)
        elif skip:
            continue
        elif num is not None or op == "(" or (op == "-" and m.end() < len(text) and text[m.end()].isdigit()
                                              and (m.start() == 0 or text[m.start() - 1].isspace())):
            run = [num or op]  # a run starts at a number, a bracket or an attached minus sign
        else:
            skip = True  # an operator after a word
    if run:
        yield run


def _steps(text: str):
    """Each checkable calculation: ``(expression, stated result, right?)``: in a run
    ``a = b = c``, every side holding an operator is checked against the side after it."""
    for run in _runs(text):
        if "=" not in run:
            continue
        sides, cur = [], []
        for tok in run:
            if tok == "=":
                sides.append(cur)
                cur = []
            else:
                cur.append(tok)
        sides.append(cur)
        for left, right in zip(sides, sides[1:]):
            if not right or not any(tok in "+-*/×÷x" for tok in left[1:]):
                continue  # "(2) = 3" states no calculation
            expr, stated = " ".join(left), " ".join(right)
            value, result = evaluate(expr), evaluate(stated)
            if value is None or result is None:
                continue
            pct = "%" in expr
            head = _number(right[0])  # "a = b * 100 = c" (a misused "=") states b as a's result too
            ok = (_agrees(value, *head, pct) if len(right) == 1 else
                  _agrees(value, result, 9, pct) or (head is not None and _agrees(value, *head, pct)))
            yield expr, stated, ok


def calculations(text: str) -> tuple[int, int]:
    """``(checked, wrong)``: how many calculations the answer states that could be checked, and
    how many of them have a wrong result."""
    steps = [ok for _, _, ok in _steps(text)]
    return len(steps), steps.count(False)


def has_final_answer(text: str) -> bool:
    """The answer marks its final result (``#### 42``, ``\\boxed{}``, "the answer is")."""
    return _FINAL.search(text) is not None


def wrong_calculation(text: str) -> str | None:
    """The first calculation in ``text`` whose stated result is wrong, or None."""
    for expr, stated, ok in _steps(text):
        if not ok:
            return f"{expr.strip()[:40]}={stated.strip()[:12]}"
    return None


def final_choice(text: str) -> str:
    """What the answer settles on, for comparing answers: the number after its final-answer mark
    (``#### 1,540`` and "the answer is 1540" are both ``1540``), else the option letter it opens
    with (``B``), else its words, lower case, without punctuation (the first 300 characters)."""
    marks = _FINAL_NUMBER.findall(text)
    if marks:
        n = marks[-1].replace(",", "")
        return n.rstrip("0").rstrip(".") if "." in n else n
    m = _OPTION.match(text)
    if m:
        return m.group(1).upper()
    return _NONWORD.sub(" ", text.replace("\\n", " ").lower()).strip()[:300]
