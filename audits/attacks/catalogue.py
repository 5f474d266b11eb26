"""The attack catalogue: the one list of attack names and labels in the product, filled by `@register`.

The family modules (threshold, lira, rmia, label_only) register their attacks when the package is imported.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import fields, is_dataclass
from types import MappingProxyType
from typing import Any, TypeVar

from audits.attacks.base import Attack

_REGISTRY: dict[str, type[Attack]] = {}
ATTACKS: Mapping[str, type[Attack]] = MappingProxyType(_REGISTRY)  # read-only; attack_names() gives the order

A = TypeVar("A", bound=type[Attack])

# "threshold" in a list of attacks stands for every attack of that family.
THRESHOLD = "threshold"
# Online RMIA joined for its references of about the target's size (rmia.RmiaOnlineAttack: Adult forest, 4 models,
# 24.6 % TPR@1%FPR against offline RMIA's 21.4 %); offline RMIA stays for one-model audits and remediation.
TIER_1: tuple[str, ...] = (THRESHOLD, "rmia", "lira_offline", "rmia_online")
# TIER_1 expanded: the attacks a new audit policy runs unless told otherwise.
TIER_1_NAMES: tuple[str, ...] = ("loss", "confidence", "modified_entropy", "rmia", "lira_offline", "rmia_online")


def register(cls: A) -> A:
    """Class decorator: add an attack to the catalogue under its `name`."""
    missing = [attr for attr in ("name", "label", "family", "note", "rank") if not hasattr(cls, attr)]
    if missing:
        raise TypeError(f"{cls.__name__} must set {', '.join(missing)} to be registered")
    if cls.name == THRESHOLD:
        raise ValueError(f"{THRESHOLD!r} names the threshold family, not one attack")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"an attack named {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Take an attack out of the catalogue (tests register throwaway attacks)."""
    _REGISTRY.pop(name, None)


def attack_names() -> tuple[str, ...]:
    """Every registered attack, in catalogue order."""
    return tuple(sorted(_REGISTRY, key=lambda name: (_REGISTRY[name].rank, name)))


def attack_class(name: str) -> type[Attack]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown attack {name!r}; known: {', '.join(attack_names())}") from None


def attack_label(name: str) -> str:
    return attack_class(name).label


class _Labels(Mapping[str, str]):
    """Attack name -> label in catalogue order, read from the registry at each use."""

    def __getitem__(self, name: str) -> str:
        return _REGISTRY[name].label

    def __iter__(self) -> Iterator[str]:
        return iter(attack_names())

    def __len__(self) -> int:
        return len(_REGISTRY)


ATTACK_LABELS: Mapping[str, str] = _Labels()


def build_attack(name: str, settings: Mapping[str, Any]) -> Attack:
    """The attack `name` with its settings: each dataclass field takes the value of the same name in
    `settings` (an audit's `AuditConfig.attack_settings()`); fields absent there keep their defaults."""
    cls = attack_class(name)
    if not is_dataclass(cls):
        return cls()
    return cls(**{f.name: settings[f.name] for f in fields(cls) if f.init and f.name in settings})


def expand_attacks(attacks: Sequence[str]) -> tuple[str, ...]:
    """Attack names in the order given, without repeats, "threshold" standing for the threshold family
    (loss, confidence and modified entropy)."""
    known = attack_names()
    family = tuple(name for name in known if _REGISTRY[name].family == THRESHOLD)
    names: list[str] = []
    for name in attacks:
        for expanded in family if name == THRESHOLD else (name,):
            if expanded not in _REGISTRY:
                raise ValueError(f"unknown attack {expanded!r}; known: {THRESHOLD}, {', '.join(known)}")
            if expanded not in names:
                names.append(expanded)
    return tuple(names)


# Reference models each kind needs at the least: online LiRA compares IN and OUT models for every record.
MIN_REFERENCE_MODELS = {"offline": 1, "online": 2}
MAX_REFERENCE_MODELS = 64


def plan_problems(attacks: Sequence[str], *, n_reference: int) -> dict[str, str]:
    """What makes an attack list unable to run, by field ({} when it can run): checked when a policy is saved,
    so a policy never fails every scheduled audit."""
    problems: dict[str, str] = {}
    if not isinstance(attacks, (list, tuple)) or not attacks or not all(isinstance(a, str) for a in attacks):
        return {"attacks": "a non-empty list of attack names"}
    try:
        names = expand_attacks(attacks)
    except ValueError as exc:
        return {"attacks": str(exc)}
    if not 1 <= n_reference <= MAX_REFERENCE_MODELS:
        problems["n_reference"] = f"between 1 and {MAX_REFERENCE_MODELS} reference models"
    for kind, least in MIN_REFERENCE_MODELS.items():
        needing = [name for name in names if kind in _REGISTRY[name].reference_sets]
        if needing and n_reference < least:
            problems["n_reference"] = (f"{', '.join(needing)} need{'s' if len(needing) == 1 else ''} at least {least} "
                                       f"reference models ({kind}: IN and OUT models for every record); "
                                       f"raise n_reference or remove {', '.join(needing)}")
    return problems
