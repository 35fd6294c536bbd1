"""Command-line options derived from the stage configs, so that each default and each help text is written once.

An option made by :func:`option` has no default of its own (``None``): its help shows the config field's default,
and :func:`given` drops the options the user did not give, so the config applies its default.
"""

from __future__ import annotations

import typer
from pydantic import BaseModel
from pydantic_core import PydanticUndefined


def field_default(config: type[BaseModel], name: str):
    """The default of a config field (``PydanticUndefined`` for a required field)."""
    return config.model_fields[name].get_default(call_default_factory=True)


def option(
    config: type[BaseModel], name: str, *flags: str, help: str | None = None, **kwargs
) -> typer.models.OptionInfo:
    """A typer option for the config field ``name``: the field's description, and its default shown in the help."""
    text = help or config.model_fields[name].description or ""
    default = field_default(config, name)
    if default is not PydanticUndefined and default is not None and default != [] and not isinstance(default, bool):
        text += f" [default: {default}]"
    return typer.Option(*flags, help=text, show_default=False, **kwargs)


def int_list(text: str | None, flag: str, what: str, fix: str) -> list[int] | None:
    """The value of option ``flag``: '3,2,1' -> [3, 2, 1]; None or '' -> None; else a ConfigError: not ``what``."""
    if not text or not text.strip():
        return None
    try:
        return [int(part) for part in text.replace(" ", "").split(",")]
    except ValueError:
        from terralearn.errors import ConfigError

        raise ConfigError(f"{flag} {text!r} is not {what}.", fix) from None


def given(**values) -> dict:
    """The options the user gave (``None`` means not given, so the config's default applies)."""
    return {k: v for k, v in values.items() if v is not None}
