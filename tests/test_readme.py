"""The README is the front door: every coloi command it shows must name a real command and
real options, and its set-up and test commands must be the ones CI runs."""

from __future__ import annotations

import re
import shlex

from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def shown_commands() -> list[list[str]]:
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", README, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#")[0].strip()
            for part in re.split(r"&&|;", line):
                words = shlex.split(part)
                if words and words[0] == "sudo":
                    words = words[1:]
                if len(words) > 1 and (words[0] == "coloi" or words[0].endswith("/bin/coloi")):
                    commands.append(words[1:])
    return commands


def test_readme_commands_use_real_commands_and_options(cli) -> None:
    commands = shown_commands()
    assert len(commands) > 10
    for words in commands:
        global_options = []
        while words and words[0].startswith("-"):
            global_options.append(words.pop(0))
        if not words:
            continue
        name, options = words[0], [w.split("=")[0] for w in words[1:] if w.startswith("-")]
        help_text = cli(name, "--help")
        assert help_text.exit_code == 0, f"coloi {name}: not a command"
        for option in options:
            assert option in help_text.stdout, f"coloi {name}: no option {option}"
        main_help = cli("--help").stdout
        for option in global_options:
            assert option in main_help, f"coloi: no global option {option}"


def test_ci_runs_the_readme_test_command() -> None:
    test_command = "python -m pip install -e '.[tf,test,ray]' && python -m pytest"
    assert test_command in README
    assert test_command in (REPO / ".ci" / "run").read_text()


def test_every_command_is_documented_in_the_readme() -> None:
    from coloi.cli import app

    for command in app.registered_commands:
        name = command.name or command.callback.__name__  # type: ignore[union-attr]
        assert f"### `coloi {name}" in README or f"`coloi {name}`" in README, name
