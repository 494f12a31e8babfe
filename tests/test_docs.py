"""Every ```python block of the docs runs, and every `aelab ...` shell example parses.

Each page runs in a fresh namespace and a temporary working directory; its blocks
run in order, so a later block may use what an earlier one defined.
"""

import re
import shlex
from pathlib import Path

import pytest

from aelab.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
COMMANDS = ["demo", "train", "score", "evaluate", "threshold", "encode", "decode", "generate", "cluster", "report", "cost",
            "quantize-scan", "export", "calibrate", "explain"]


def blocks(page: Path, languages: tuple[str, ...]) -> list[tuple[int, str]]:
    """(line number, code) of each fenced block in one of ``languages``."""
    text = page.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 2, m.group(2)) for m in FENCE.finditer(text) if m.group(1) in languages]


def shell_commands(page: Path) -> list[tuple[int, str]]:
    """(line, command) of each `aelab ...` line in the bash/console blocks, continuations joined."""
    out = []
    for lang in ("bash", "sh", "shell", "console"):
        for line, code in blocks(page, (lang,)):
            for i, cmd in enumerate(code.replace("\\\n", " ").splitlines()):
                if lang == "console":  # a session: commands follow the prompt, other lines are output
                    if not cmd.startswith("$ "):
                        continue
                    cmd = cmd[2:]
                if cmd.strip().startswith("aelab "):
                    out.append((line + i, cmd.strip()))
    return out


def test_the_pages_are_found():
    names = {p.name for p in PAGES}
    assert {"tutorial.md", "cli.md", "README.md"} <= names
    assert blocks(ROOT / "docs" / "cli.md", ("python",)), "docs/cli.md has no python example"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_python_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__main__"}
    for line, code in blocks(page, ("python",)):
        exec(compile(code, f"{page.name}, the python block at line {line}", "exec"), namespace)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_shell_examples_are_valid_commands(page):
    parser = build_parser()
    for line, cmd in shell_commands(page):
        argv = shlex.split(cmd, comments=True)[1:]
        if argv in (["--help"], ["--version"]) or "--help" in argv:
            continue
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{page.name}, line {line}: {cmd!r} is not a valid aelab command")


def test_cli_page_shows_every_command():
    shown = {cmd.split()[1] for _, cmd in shell_commands(ROOT / "docs" / "cli.md")}
    assert set(COMMANDS) <= shown, f"docs/cli.md has no example of {sorted(set(COMMANDS) - shown)}"
