"""The flags of ``leaderelection serve``, generated from the fields of ``Settings``.

Example::

    parser = argparse.ArgumentParser(prog="leaderelection serve")
    add_flags(parser)            # --backend-url, --port, --insecure/--no-insecure, ...
    given(parser.parse_args(["--port", "9000", "--no-sql-create-schema"]))
    # {"port": 9000, "sql_create_schema": False}: only what the command line gave
    shown_default("ttl_max")     # "3600", as --help and the README show it

Every field becomes ``--`` and its name with dashes; its help is the field's
description followed by ``(default: ...)``; a bool is ``--x/--no-x``, a
``Literal`` offers its choices, int and float are checked by argparse, a
``Path`` is made absolute. A flag left out is absent from the namespace
(``argparse.SUPPRESS``), so the environment decides it, then the field's
default: a flag beats ``LEADERELECTION_*``. A new setting is therefore one
``Field`` in ``Settings`` (and its row in the README's configuration table,
which ``tests/test_cli_settings.py`` holds to the flags).

Why not pydantic-settings' own command-line source (``CliSettingsSource``,
``cli_parse_args``)? Tried on ``Settings`` with ``root_parser=`` and
kebab-case flags, it names metavars after types (``--port int``,
``--auth-file {Path,null}``), spells defaults the Python way (``True``,
``null``, ``default factory: default_backend_url``, an empty
``(default: )``), and hands flag values to the model's validators, so
``--backend-url`` could no longer take a plain directory while the variable
refuses one. Above all it builds a ``Settings`` in this process only, while
uvicorn's worker processes build theirs from the environment: the values
given have to become ``LEADERELECTION_*`` variables anyway (``env_for``), and
that is all ``given`` feeds. Generating argparse arguments is a few dozen
lines, keeps argparse's own errors (``argument --port: invalid int value``),
and shows defaults as the README and the environment spell them.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from leaderelection_service.settings import Settings


def flag(name: str) -> str:
    """The flag of setting ``name`` as the README writes it: ``--x`` or ``--[no-]x``."""
    dashed = name.replace("_", "-")
    return f"--[no-]{dashed}" if _value_type(Settings.model_fields[name]) is bool else f"--{dashed}"


def shown_default(name: str) -> str:
    """The default of setting ``name`` as the environment spells it (``none`` when unset)."""
    value = Settings.model_fields[name].get_default(call_default_factory=True, validated_data={})
    if value is None or value == "":
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def add_flags(
    parser: argparse.ArgumentParser,
    names: Iterable[str] | None = None,
    convert: Mapping[str, Callable[[str], Any]] | None = None,
) -> None:
    """A flag on ``parser`` for each setting in ``names`` (all by default).

    ``convert`` replaces the parsing of a flag's value, for what the command
    line accepts beyond the variable (a plain directory for ``--backend-url``).
    """
    for name in Settings.model_fields if names is None else names:
        field = Settings.model_fields[name]
        kind = _value_type(field)
        text = f"{field.description or ''} (default: {shown_default(name)})".strip()
        options: dict[str, Any] = {
            "dest": name,
            "default": argparse.SUPPRESS,  # left out: the environment, then the default
            "help": text.replace("%", "%%"),
        }
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is typing.Literal:
            options["choices"] = [str(choice) for choice in typing.get_args(kind)]
        elif kind in (int, float):
            options["type"] = kind
        elif kind is Path:
            options["type"] = _absolute
        if convert and name in convert:
            options["type"] = convert[name]
        parser.add_argument("--" + name.replace("_", "-"), **options)


def given(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the command line gave, by field name (the ones left out are absent)."""
    return {name: value for name, value in vars(args).items() if name in Settings.model_fields}


def _value_type(field: FieldInfo) -> Any:
    """The field's type, without ``| None``."""
    kind = field.annotation
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        present = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        kind = present[0] if len(present) == 1 else str
    return kind


def _absolute(value: str) -> str:
    # Absolute, so that the value means the same whatever directory reads it later.
    return str(Path(value).absolute())
