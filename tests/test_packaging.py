"""Every data file the code reads ships in the wheel (a non-editable install has no repo)."""

from __future__ import annotations

import tomllib

from tests.conftest import ROOT


def test_package_data_covers_every_data_file() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    package_data = config["tool"]["setuptools"]["package-data"]
    for package in ("engine", "plugins"):
        base = ROOT / package
        shipped = {p for pattern in package_data.get(package, []) for p in base.glob(pattern)}
        data = {p for p in base.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")
                and "__pycache__" not in p.parts}
        assert data - shipped == set(), f"{package}: not in [tool.setuptools.package-data]"
