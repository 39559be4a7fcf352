"""The README runs as written: every bash, Python and `$ `-prefixed text block, in order, in one fresh folder.

A block preceded by `<!-- readme-test: skip (reason) -->` is skipped (long-running set-up). In `text` blocks each
`$ command` runs through bash and every output line shown after it (bar `...` and trailing `# comments`) must
appear, in order, in what the command prints.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^```(\w*)\s*$")


def blocks(text: str) -> list[tuple[str, str, int]]:
    """(language, body, line number) of each top-level fenced block that is not marked to skip."""
    out, lines, k = [], text.splitlines(), 0
    while k < len(lines):
        m = FENCE.match(lines[k])
        if m and m.group(1):
            end = next(j for j in range(k + 1, len(lines)) if lines[j].startswith("```"))
            skip = k > 0 and lines[k - 1].startswith("<!-- readme-test: skip")
            if not skip and m.group(1) in ("bash", "python", "text"):
                out.append((m.group(1), "\n".join(lines[k + 1:end]), k + 1))
            k = end + 1
        else:
            k += 1
    return out


def _norm(line: str) -> str:
    line = re.split(r"\s{2,}#\s", line)[0]
    return " ".join(line.split())


def sessions(body: str) -> list[tuple[str, list[str]]]:
    """`$ command` and the output lines shown under it."""
    out: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            out.append((line[2:], []))
        elif out and _norm(line) and _norm(line) != "...":
            out[-1][1].append(_norm(line))
    return out


def test_readme_blocks_are_found():
    kinds = [lang for lang, _, _ in blocks(README.read_text())]
    assert kinds.count("python") >= 2 and kinds.count("text") >= 2 and kinds.count("bash") >= 1


def test_readme_runs_as_written(tmp_path):
    env = dict(os.environ, CARTINV_CACHE=str(tmp_path / "cache"), PYTHONUNBUFFERED="1")
    work = tmp_path / "work"
    work.mkdir()
    for lang, body, line in blocks(README.read_text()):
        where = f"README.md line {line}"
        if lang == "python":
            proc = subprocess.run([sys.executable, "-c", body], cwd=work, env=env, capture_output=True, text=True,
                                  timeout=600)
            assert proc.returncode == 0, f"{where}:\n{proc.stderr[-3000:]}"
            continue
        steps = [(body, [])] if lang == "bash" else sessions(body)
        for command, expected in steps:
            proc = subprocess.run(["bash", "-e", "-c", command], cwd=work, env=env, capture_output=True, text=True,
                                  timeout=600)
            assert proc.returncode == 0, f"{where}: {command}\n{proc.stderr[-3000:]}"
            actual = [_norm(x) for x in proc.stdout.splitlines()]
            pos = 0
            for want in expected:
                hits = [i for i in range(pos, len(actual)) if want in actual[i]]
                assert hits, f"{where}: `{command}` no longer prints {want!r} (in order)"
                pos = hits[0] + 1
