"""Installed versions of the libraries a result depends on, recorded with audits and evidence so a run can be
reproduced. Standard library only (the pure attack core uses it too)."""
from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Iterable


def package_versions(packages: Iterable[str]) -> dict[str, str | None]:
    """{package: version, or None when it is not installed}."""
    versions: dict[str, str | None] = {}
    for package in packages:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def python_environment(packages: Iterable[str]) -> dict[str, object]:
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": package_versions(packages)}
