"""What a wheel of seqexp holds: every package, the Hydra config and the C++ kernels' sources."""

from __future__ import annotations

import tomllib
from pathlib import Path

from seqexp.config.checking import CONF, shipped_config_dir

ROOT = Path(__file__).parents[1]


def test_the_wheel_lists_every_package_and_maps_conf_into_seqexp() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "seqexp").rglob("__init__.py")
    }
    plugin = {"hydra_plugins.seqexp_sweeper": "seqexp/search/hydra_plugin"}  # where Hydra looks for it
    assert set(setuptools["packages"]) == on_disk - {"seqexp.search.hydra_plugin"} | {"seqexp.conf", *plugin}
    assert setuptools["package-dir"] == {"seqexp.conf": "conf"} | plugin
    assert setuptools["package-data"]["seqexp.conf"] == ["**/*.yaml"]
    sources = {p.name for p in (ROOT / "seqexp" / "kernels").glob("*.cpp")}
    assert sources == {"onednn_lstm.cpp", "linear_scans.cpp"}  # each built on first use, from the wheel too
    assert setuptools["package-data"]["seqexp.kernels"] == ["*.cpp"]


def test_from_a_source_tree_the_config_is_conf_at_its_top() -> None:
    assert CONF == shipped_config_dir() == ROOT / "conf"
    assert (CONF / "config.yaml").is_file()
