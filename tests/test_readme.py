"""The README is the user's manual: its first screen and its Configuration table must stay true."""
from __future__ import annotations

import re
from pathlib import Path

from ingest.__main__ import config_table

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_first_screen_gives_the_two_commands() -> None:
    first_screen = "\n".join(README.splitlines()[:40])
    block = re.search(r"```sh\n(.*?)```", first_screen, re.S)
    assert block, "the first screen has no command block"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["make run", "make test"]


def test_configuration_table_matches_the_code() -> None:
    table = README.split("<!-- config-table -->\n")[1].split("<!-- /config-table -->")[0].strip()
    assert table == config_table(), "run: python -m ingest config-table, and paste it into the README"
