"""What every ``mlgate`` command shares: click options made from the settings table, and
the :class:`Settings` they build (a bad value is a usage error)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from gateway.settings import SETTINGS, ConfigError, Settings

__all__ = ["build_settings", "settings_options"]


def settings_options(names: tuple[str, ...]) -> Callable[[Any], Any]:
    """Click options for the named settings, all defaulting to None (= not given) so the
    environment and the table's defaults apply in :meth:`Settings.from_sources`."""

    def decorate(fn: Any) -> Any:
        for s in reversed([s for s in SETTINGS if s.name in names]):
            help_text = f"{s.help} [env: {', '.join(s.envvars)}; default: {s.default}]"
            if s.type is bool:
                fn = click.option(s.option, s.name, default=None, help=help_text)(fn)
            else:
                fn = click.option(s.option, s.name, type=s.type, default=None,
                                  help=help_text)(fn)
        return fn

    return decorate


def build_settings(flags: dict[str, Any]) -> Settings:
    try:
        return Settings.from_sources(flags)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
