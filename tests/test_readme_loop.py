"""The README's "The plant's loop" section cannot rot: every command in it parses with the CLI's own parser."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from inspect_app.cli import build_parser

SECTION = "## The plant's loop"
SEPARATORS = {"&&", "||", ";", "|", "&"}
REDIRECTION = re.compile(r"^\d*(>>?|<)")
ENV_ASSIGNMENT = re.compile(r"[A-Z_][A-Z0-9_]*=")


def loop_commands(readme: str) -> list[list[str]]:
    """The ``inspect-app`` command lines of the loop section's code blocks, as argument lists (comments, ``&`` and
    the shell around them removed)."""
    start = readme.index(SECTION)
    end = readme.find("\n## ", start + len(SECTION))
    section = readme[start:end if end > 0 else None]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.DOTALL):
        for line in block.splitlines():
            # A line may chain commands (`a && inspect-app ...`), background one (`... &`) or set variables first.
            groups: list[list[str]] = [[]]
            redirect_target = False
            for word in shlex.split(line, comments=True):
                if redirect_target or REDIRECTION.match(word):  # `> file`, `2>&1`, `>file`: the shell's, not ours
                    redirect_target = word in (">", ">>", "2>", "<")
                elif word in SEPARATORS:
                    groups.append([])
                elif groups[-1] or not ENV_ASSIGNMENT.match(word):
                    groups[-1].append(word)
            commands += [argv[1:] for argv in groups if argv and argv[0] == "inspect-app"]
    return commands


def test_every_loop_command_parses(repo_root: Path) -> None:
    commands = loop_commands((repo_root / "README.md").read_text(encoding="utf-8"))
    parser = build_parser()
    seen = set()
    for argv in commands:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # argparse's refusal: an unknown sub-command, flag or value
            pytest.fail(f"README loop command does not parse ({exc}): inspect-app {shlex.join(argv)}")
        assert callable(args.func), argv
        seen.add(args.command)
    # The loop's steps: inspect, export and check, retrain (queue + worker, or a schedule), promote.
    assert {"run", "reviews", "data", "train", "worker", "scheduler", "runs", "models"} <= seen


def test_a_wrong_flag_in_the_section_is_caught() -> None:
    readme = (f"{SECTION}\n\n```bash\nmkdir -p var && inspect-app reviews export --out x.csv   # fine\n"
              "INSPECT_DEVICE=cpu inspect-app worker --twice > w.log 2>&1 &\n```\n\n"
              "## Next\n\n```bash\ninspect-app nope\n```\n")
    commands = loop_commands(readme)
    assert commands == [["reviews", "export", "--out", "x.csv"], ["worker", "--twice"]]
    with pytest.raises(SystemExit):
        build_parser().parse_args(commands[1])
