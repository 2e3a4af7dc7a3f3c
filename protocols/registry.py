"""Every registered scheme, imported in one place so the registry is complete."""
from __future__ import annotations

import importlib

from e2eebench.protocols.errors import UnknownNameError
from e2eebench.protocols.framework import SCHEMES, Scheme

# one module per family; each registers its schemes on import, in the order of the design's
# table (baseline, device-related, encryption-related, server-related), which is the default
# row order of every comparison
SCHEME_MODULES = [
    "baseline",
    "franking",
    "ondevice",
    "hashupload",
    "psi",
    "psi_openmined",
    "he",
    "mpc",
    "enclave",
]
for _m in SCHEME_MODULES:
    importlib.import_module(f"e2eebench.protocols.{_m}")


def scheme_class(name: str) -> type[Scheme]:
    try:
        return SCHEMES[name]
    except KeyError:
        raise UnknownNameError("scheme", name, list(SCHEMES)) from None


def list_schemes() -> list[type[Scheme]]:
    return list(SCHEMES.values())


def parse_scheme_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        scheme_class(n)
    return names
