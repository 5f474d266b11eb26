"""The controls annex of an evidence bundle: each framework's mapping file (audits/evidence/controls/*.json — data,
versioned, one file a framework, so a new framework is a new file) applied to the bundle's facts.

A mapping file names, for each control, its clause as the framework numbers it and the evidence checks that decide
it (audits.evidence.checks). A control's status is its worst check's (ControlStatus.rank): any check not met makes
it not met, else any not measured makes it not measured, else it is met, or not applicable when every check is.
A file naming a check the vocabulary does not have is refused when it is loaded.

Pure, like the checks (the standard library and audits.evidence.format): the annex is computed from what the bundle
holds, and needs neither Django nor the science stack.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audits.evidence.checks import Facts, check_names, run_check
from audits.evidence.format import CONTROLS_DIR, CONTROLS_FORMAT, ControlStatus

FRAMEWORKS_DIR = Path(__file__).resolve().parent / "controls"
FRAMEWORK_KEYS = ("framework", "text_version", "mapping_version", "source", "controls")
CONTROL_KEYS = ("id", "clause", "title", "checks")
RULE = ("a control's status is its worst check's: not met, then not measured, then met; not applicable only when "
        "every check is")


class AnnexError(ValueError):
    """A framework mapping file that cannot be used, naming the file and what is wrong in it."""


@dataclass(frozen=True)
class Control:
    id: str
    clause: str
    title: str
    checks: tuple[str, ...]
    note: str = ""


@dataclass(frozen=True)
class Framework:
    id: str  # the file's name without .json
    name: str
    text_version: str
    mapping_version: int
    source: str
    controls: tuple[Control, ...]
    data: bytes  # the file as shipped: it goes into the bundle, and its hash into controls.json

    @property
    def file(self) -> str:
        """Its name inside a bundle."""
        return f"{CONTROLS_DIR}{self.id}.json"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "text_version": self.text_version,
                "mapping_version": self.mapping_version, "source": self.source, "file": self.file,
                "sha256": self.sha256, "controls": len(self.controls)}


def load_framework(path: Path) -> Framework:
    """One mapping file, checked: its keys, each control's, and every check it names against the vocabulary."""
    data = path.read_bytes()
    where = path.name
    try:
        spec = json.loads(data)
    except ValueError as exc:
        raise AnnexError(f"{where}: not JSON ({exc})") from None
    if not isinstance(spec, dict):
        raise AnnexError(f"{where}: not a JSON object")
    missing = [key for key in FRAMEWORK_KEYS if key not in spec]
    if missing:
        raise AnnexError(f"{where}: missing {', '.join(missing)}")
    if not isinstance(spec["mapping_version"], int) or isinstance(spec["mapping_version"], bool):
        raise AnnexError(f"{where}: mapping_version must be a whole number (raise it with every change to the file)")
    if not isinstance(spec["controls"], list) or not spec["controls"]:
        raise AnnexError(f"{where}: controls must be a non-empty list")
    known, seen, controls = set(check_names()), set(), []
    for index, item in enumerate(spec["controls"]):
        at = f"{where}: control {index}"
        if not isinstance(item, dict) or any(not item.get(key) for key in CONTROL_KEYS):
            raise AnnexError(f"{at}: needs {', '.join(CONTROL_KEYS)}")
        if item["id"] in seen:
            raise AnnexError(f"{at}: the id {item['id']!r} is used twice")
        seen.add(item["id"])
        if not isinstance(item["checks"], list) or not all(isinstance(name, str) for name in item["checks"]):
            raise AnnexError(f"{at} ({item['id']}): checks must be a list of check names")
        unknown = [name for name in item["checks"] if name not in known]
        if unknown:
            raise AnnexError(f"{at} ({item['id']}): unknown evidence check(s) {', '.join(map(repr, unknown))}; "
                             f"known: {', '.join(sorted(known))}")
        controls.append(Control(id=str(item["id"]), clause=str(item["clause"]), title=str(item["title"]),
                                checks=tuple(item["checks"]), note=str(item.get("note") or "")))
    return Framework(id=path.stem, name=str(spec["framework"]), text_version=str(spec["text_version"]),
                     mapping_version=spec["mapping_version"], source=str(spec["source"]), controls=tuple(controls),
                     data=data)


def load_frameworks(directory: Path = FRAMEWORKS_DIR) -> list[Framework]:
    """Every *.json in `directory`, in name order."""
    frameworks = [load_framework(path) for path in sorted(directory.glob("*.json"))]
    if not frameworks:
        raise AnnexError(f"no framework mapping file in {directory}")
    return frameworks


def combine(statuses: Iterable[ControlStatus]) -> ControlStatus:
    return max(statuses, key=lambda status: status.rank)


def build_annex(frameworks: list[Framework], facts: Facts) -> dict[str, Any]:
    """controls.json: the frameworks (versions and file hashes) and one row per control with its checks' evidence.
    Each check is evaluated once, so a figure reads the same in every framework that uses it."""
    results = {name: run_check(name, facts)
               for name in sorted({name for f in frameworks for c in f.controls for name in c.checks})}
    rows = []
    for framework in frameworks:
        for control in framework.controls:
            row = {"framework": framework.id, "framework_file": framework.file, "control": control.id,
                   "clause": control.clause, "title": control.title,
                   "status": str(combine(results[name].status for name in control.checks)),
                   "checks": [results[name].to_dict(name) for name in control.checks]}
            if control.note:
                row["note"] = control.note
            rows.append(row)
    return {"format": CONTROLS_FORMAT, "model": facts.slug, "statuses": [str(s) for s in ControlStatus],
            "rule": RULE, "frameworks": [f.summary() for f in frameworks], "rows": rows}
