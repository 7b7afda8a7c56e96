"""The service's settings (`Settings`), each declared once in `settings.py` by the rules of `declare.py`."""
from __future__ import annotations

from ingest.config.declare import ConfigError, Setting
from ingest.config.settings import ENV, SETTINGS, MiB, Settings, Var, bundle_limits

__all__ = ["ENV", "SETTINGS", "ConfigError", "MiB", "Setting", "Settings", "Var", "bundle_limits"]
