"""Where seqexp's Hydra config is (importing nothing heavy: ``seqexp --help`` reads it)."""

from __future__ import annotations

from pathlib import Path


def shipped_config_dir() -> Path:
    """seqexp's Hydra config: ``seqexp/conf`` in an installed wheel, else ``conf/`` at the top of the
    source tree (an editable install)."""
    package = Path(__file__).parents[1]
    packaged = package / "conf"
    return packaged if packaged.is_dir() else package.parent / "conf"


CONF = shipped_config_dir()
