"""The real-client conformance suite: pinned client libraries against a gateway over the demo fleet.

    python compat/run.py [--clients openai_sdk,google_genai_sdk] [--no-install] [--jobs 3]

Creates the virtual environments of ``compat/requirements.txt`` (``compat/.venv``, plus one per
``# [name]`` section) if missing, installs switchman and then each pinned package one by one, starts
``switchman demo`` on a free loopback port, runs each client scenario (``compat/clients/*.py``) in its
own subprocess, prints a pass/fail matrix (rows: clients; columns: plain, stream, tools, structured,
async; each cell: how many of the four demo models, one per upstream wire API, passed) and writes it
to ``compat/RESULTS.md``. Exits non-zero if any cell fails.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
COLUMNS = ("plain", "stream", "tools", "structured", "async")
PROVIDERS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-pro",
             "responses": "gpt-5.5-pro"}
# client scenario -> the environment (requirements.txt section) it runs in, in matrix order
CLIENTS = {
    "openai_sdk": "main", "anthropic_sdk": "main", "google_genai_sdk": "main", "openai_agents": "main",
    "pydantic_ai_agent": "pydantic-ai", "langchain_openai_chat": "main", "langchain_anthropic_chat": "main",
    "litellm_client": "main", "instructor_client": "instructor",
}
# Cells that fail because of a gateway bug someone is fixing: still shown failing (✗) with the bug named,
# but they do not fail the run; one that starts passing does, so it is taken off this list.
KNOWN: dict[tuple[str, str, str], str] = {}
PIP_TIMEOUT = 600
CLIENT_TIMEOUT = 240


@dataclass
class Env:
    name: str
    pins: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return HERE / (".venv" if self.name == "main" else f".venv-{self.name}")

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"


def read_envs(path: Path = HERE / "requirements.txt") -> dict[str, Env]:
    envs = {"main": Env("main")}
    cur = envs["main"]
    for line in path.read_text().splitlines():
        line = line.strip()
        if m := re.match(r"#\s*\[([\w-]+)\]", line):
            cur = envs.setdefault(m[1], Env(m[1]))
        elif line and not line.startswith("#"):
            cur.pins.append(line)
    return envs


def _dist(pin: str) -> tuple[str, str]:
    name, _, ver = pin.partition("==")
    return re.sub(r"\[.*\]", "", name).strip().lower().replace("_", "-"), ver.strip()


def installed(env: Env) -> dict[str, str]:
    """Distribution name -> version, as the environment's own Python sees them."""
    code = ("import json, importlib.metadata as m; print(json.dumps({d.metadata['Name'].lower().replace('_', '-'): "
            "d.version for d in m.distributions() if d.metadata['Name']}))")
    out = subprocess.run([str(env.python), "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def _pip(env: Env, *args: str) -> None:
    t = time.monotonic()
    cmd = [str(env.python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT)
    errs = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("WARNING: Location")]
    if r.returncode:
        raise SystemExit(f"compat: `pip install {' '.join(args)}` failed in {env.path.name}:\n" + "\n".join(errs[-15:]))
    print(f"  {env.path.name}: installed {' '.join(args)} in {time.monotonic() - t:.0f}s", flush=True)


def _has_this_switchman(env: Env) -> bool:
    code = "import switchman, sys; print(switchman.__file__)"
    r = subprocess.run([str(env.python), "-c", code], capture_output=True, text=True, timeout=60)
    return r.returncode == 0 and Path(r.stdout.strip()).resolve().is_relative_to(REPO / "src")


def prepare(env: Env) -> None:
    """Create the environment if missing; install (one by one) whatever pin it does not hold."""
    if not env.python.exists():
        print(f"compat: creating {env.path.relative_to(REPO)}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(env.path)], check=True, timeout=300)
    if env.name == "main" and not _has_this_switchman(env):
        _pip(env, "-e", str(REPO))
    for pin in env.pins:
        name, ver = _dist(pin)
        if installed(env).get(name) != ver:
            _pip(env, pin)
    have = installed(env)
    lost = [f"{p} (now {have.get(_dist(p)[0])})" for p in env.pins if have.get(_dist(p)[0]) != _dist(p)[1]]
    if lost:  # a later pin's requirements moved an earlier one: the pins cannot share this environment
        raise SystemExit(f"compat: in {env.path.name}, a later install moved {', '.join(lost)}; "
                         f"give the conflicting pin its own [section] in compat/requirements.txt")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gateway(env: Env) -> tuple[subprocess.Popen, str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(HERE / ".gateway.log", "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([str(env.path / "bin" / "switchman"), "demo", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"compat: the demo gateway exited ({proc.returncode}); see compat/.gateway.log")
        try:
            with urllib.request.urlopen(base + "/v1/models", timeout=2) as r:
                if r.status == 200:
                    return proc, base
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("compat: the demo gateway did not answer GET /v1/models within 60s")


def run_client(name: str, env: Env, base: str) -> list[dict]:
    t = time.monotonic()
    try:
        r = subprocess.run([str(env.python), str(HERE / "clients" / f"{name}.py"), base], capture_output=True,
                           text=True, timeout=CLIENT_TIMEOUT, cwd=HERE / "clients")
        out, err = r.stdout, r.stderr
    except subprocess.TimeoutExpired as e:
        out, err = "", f"timed out after {CLIENT_TIMEOUT}s"
        del e
    line = next((ln for ln in out.splitlines() if ln.startswith("COMPAT-RESULTS ")), None)
    print(f"  {name}: {time.monotonic() - t:.0f}s", flush=True)
    if line is None:
        why = (err.strip().splitlines() or ["no results"])[-1][:160]
        return [{"row": name, "col": c, "provider": p, "ok": False, "why": f"the client crashed: {why}"}
                for c in COLUMNS for p in PROVIDERS]
    return json.loads(line.removeprefix("COMPAT-RESULTS "))


@dataclass
class Matrix:
    results: list[dict]
    notes: list[str] = field(default_factory=list)

    def _note(self, text: str) -> int:
        if text not in self.notes:
            self.notes.append(text)
        return self.notes.index(text) + 1

    def cell(self, row: str, col: str) -> str:
        rs = [r for r in self.results if r["row"] == row and r["col"] == col]
        if not rs:
            return "?"
        if any(r["ok"] is None for r in rs):
            return f"— [{self._note(rs[0]['why'])}]"
        bad = [r for r in rs if not r["ok"]]
        if not bad:
            return f"✓ {len(rs)}/{len(rs)}"
        refs = ",".join(str(self._note(f"{row} / {col} / {r['provider']}: {r['why']}"
                                       + (f" — known {KNOWN[row, col, r['provider']]}"
                                          if (row, col, r["provider"]) in KNOWN else ""))) for r in bad)
        return f"✗ {len(rs) - len(bad)}/{len(rs)} [{refs}]"

    def rows(self) -> list[str]:
        seen: list[str] = []
        for r in self.results:
            if r["row"] not in seen:
                seen.append(r["row"])
        return seen

    def table(self) -> list[list[str]]:
        self.notes.clear()
        return [[row, *(self.cell(row, c) for c in COLUMNS)] for row in self.rows()]

    def counts(self) -> tuple[int, int, int]:
        ok = sum(1 for r in self.results if r["ok"] is True)
        bad = sum(1 for r in self.results if r["ok"] is False)
        return ok, bad, sum(1 for r in self.results if r["ok"] is None)

    def unexpected(self) -> tuple[list[dict], list[dict]]:
        """Failures not on the KNOWN list, and KNOWN cells that now pass."""
        key = lambda r: (r["row"], r["col"], r["provider"])  # noqa: E731
        return ([r for r in self.results if r["ok"] is False and key(r) not in KNOWN],
                [r for r in self.results if r["ok"] is True and key(r) in KNOWN])


def render_text(m: Matrix) -> str:
    t = m.table()
    head = ["client", *COLUMNS]
    w = [max(len(r[i]) for r in [head, *t]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in [head, *t]]
    lines.insert(1, "  ".join("-" * x for x in w))
    lines += [f"[{i}] {n}" for i, n in enumerate(m.notes, 1)]
    return "\n".join(lines)


def render_md(m: Matrix, versions: dict[str, dict[str, str]], envs: dict[str, Env], cmd: str, secs: float) -> str:
    t = m.table()
    ok, bad, _ = m.counts()
    known = bad - len(m.unexpected()[0])
    out = [
        "# Real-client conformance", "",
        f"{datetime.date.today().isoformat()}, `{cmd}` ({secs:.0f}s): {ok} passed, {bad} failed"
        + (f" ({known} of them known gateway bugs, in the notes)" if known else "") + ".", "",
        "Each cell: how many of the demo fleet's four models passed, one per upstream wire API: "
        + ", ".join(f"`{m_}` ({p})" for p, m_ in PROVIDERS.items()) + ". The gateway is `switchman demo`.", "",
        "| client | " + " | ".join(COLUMNS) + " |", "|" + "---|" * (len(COLUMNS) + 1),
        *("| " + " | ".join(r) + " |" for r in t), "",
        *(f"{i}. {n}" for i, n in enumerate(m.notes, 1)), "",
        "Installed (one virtual environment per `compat/requirements.txt` section):", "",
    ]
    for name, env in envs.items():
        v = versions.get(name, {})
        shown = sorted({_dist(p)[0] for p in env.pins} | {"openai", "anthropic", "google-genai"})
        out.append(f"- `{env.path.name}`: " + ", ".join(f"{d} {v[d]}" for d in shown if d in v))
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", default=",".join(CLIENTS), help="comma-separated scenarios (compat/clients/*.py)")
    p.add_argument("--no-install", action="store_true", help="use the environments as they are")
    p.add_argument("--jobs", type=int, default=3, help="client scenarios run at once")
    p.add_argument("--no-write", action="store_true", help="do not rewrite compat/RESULTS.md")
    a = p.parse_args(argv)
    t0 = time.monotonic()
    clients = [c for c in a.clients.split(",") if c]
    envs = read_envs()
    needed = {"main"} | {CLIENTS[c] for c in clients}
    if not a.no_install:
        for name in needed:
            prepare(envs[name])
    versions = {n: installed(envs[n]) for n in needed}
    proc, base = start_gateway(envs["main"])
    print(f"compat: demo gateway on {base}; running {len(clients)} clients", flush=True)
    try:
        with concurrent.futures.ThreadPoolExecutor(max(1, a.jobs)) as pool:
            futs = [pool.submit(run_client, c, envs[CLIENTS[c]], base) for c in clients]
            results = [r for f in futs for r in f.result()]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    secs = time.monotonic() - t0
    m = Matrix(results)
    print("\n" + render_text(m))
    ok, bad, na = m.counts()
    if not a.no_write and set(clients) == set(CLIENTS):
        cmd = "python compat/run.py"
        (HERE / "RESULTS.md").write_text(render_md(Matrix(results), versions, envs, cmd, secs))
    new_bad, fixed = m.unexpected()
    for r in fixed:
        print(f"compat: {r['row']} / {r['col']} / {r['provider']} now passes: take it off KNOWN in compat/run.py")
    known = bad - len(new_bad)
    print(f"\ncompat ({secs:.0f}s): {ok} passed, {bad} failed"
          + (f" ({known} of them known gateway bugs, in the notes above)" if known else "") + f", {na} not applicable")
    print(f"compat: {ok} passed, {len(new_bad)} failed")
    return 1 if new_bad or fixed else 0


if __name__ == "__main__":
    sys.exit(main())
