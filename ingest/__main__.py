"""`python -m ingest config-table`: the Configuration table of the README, made from the settings' declarations
(`ingest.config.ENV`, one row per `setting(...)` in ingest/config/settings.py)."""
from __future__ import annotations

import sys

from ingest.config import ENV


def config_table() -> str:
    lines = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for var in ENV:
        default = f"`{var.default}`" if var.default else "(empty)"
        lines.append(f"| `{var.name}` | {default} | {var.help} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] != ["config-table"]:
        sys.exit("usage: python -m ingest config-table")
    print(config_table())
