"""The example files that ship with convcost (the repository's ``configs/``), found by name from any folder.

In a clone the files are ``configs/`` at the repository root; an installed wheel carries the same files as
``convcost/configs/`` (pyproject.toml maps one onto the other). Pure Python: no torch, no pydantic.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from convcost.errors import ConvcostError


class Use(str, Enum):
    """The command that reads a bundled file."""

    MODEL = "model"
    BATCH = "batch"
    CHECK = "check"
    SCHEMA = "schema"

    @property
    def noun(self) -> str:
        """What the command calls such a file."""
        return {"model": "model file", "batch": "batch file", "check": "budget file"}.get(self.value, "schema")


@dataclass(frozen=True)
class Bundled:
    """One shipped file: its name (the file name without ``.yaml``), its command and what it holds."""

    name: str
    filename: str
    use: Use
    about: str


# Every file in configs/ is listed here (a test checks it), so `convcost bundled` never misses or invents one.
BUNDLED = (
    Bundled("mobilenet_v1", "mobilenet_v1.yaml", Use.MODEL, "MobileNet v1, 224×224, width multiplier 1"),
    Bundled("mobilenet_v2", "mobilenet_v2.yaml", Use.MODEL, "MobileNetV2, 224×224, width multiplier 1"),
    Bundled("seeds", "seeds.yaml", Use.BATCH, "the four cases convcost grew from"),
    Bundled("mistakes", "mistakes.yaml", Use.BATCH, "wrong constructions, each flagged (exit 1)"),
    Bundled("mobilenet_v1_layers", "mobilenet_v1_layers.yaml", Use.BATCH, "MobileNet v1's 13 separable layers"),
    Bundled("budgets", "budgets.yaml", Use.CHECK, "CI budgets for the two MobileNets"),
    Bundled("batch.schema", "batch.schema.json", Use.SCHEMA, "JSON Schema of batch files"),
)


class NotFound(ConvcostError):
    """A command's file argument is neither an existing file nor the name of a bundled file for that command."""


def configs_dir() -> Path:
    """The folder of the bundled files: inside the installed package, else the clone's ``configs/``."""
    package = Path(__file__).resolve().parent.parent  # convcost/, from convcost/spec/bundled.py
    for candidate in (package / "configs", package.parent / "configs"):
        if (candidate / "batch.schema.json").is_file():  # the marker of the bundled files
            return candidate
    raise NotFound(f"the bundled files are missing: neither {package / 'configs'} nor {package.parent / 'configs'}")


def find(name: str) -> Bundled | None:
    """The bundled file called ``name`` (with or without its extension), or None."""
    return next((item for item in BUNDLED if name in (item.name, item.filename)), None)


def command_for(item: Bundled) -> str:
    """The command line that uses ``item`` from any folder."""
    return "convcost schema" if item.use is Use.SCHEMA else f"convcost {item.use.value} {item.name}"


def path_of(item: Bundled) -> Path:
    """Where ``item`` lies on this machine."""
    return configs_dir() / item.filename


def resolve(argument: str, use: Use) -> Path:
    """The file ``convcost <use> ARGUMENT`` reads: an existing path always wins; else a bundled name; else
    NotFound, one line that lists the bundled names for ``use``."""
    if os.path.exists(argument):
        return Path(argument)
    item = find(argument)
    if item is not None and item.use is use:
        return path_of(item)
    names = ", ".join(bundled.name for bundled in BUNDLED if bundled.use is use)
    if item is not None and item.use is Use.SCHEMA:
        hint = f"{item.name} is the bundled schema of batch files: convcost schema prints it"
    elif item is not None:
        hint = f"{item.name} is a bundled {item.use.noun}: convcost {item.use.value} {item.name}"
    else:
        hint = f"bundled {use.noun}s: {names} (convcost bundled lists them all)"
    raise NotFound(f"{argument}: no such file, and not a bundled {use.noun}; {hint}")
