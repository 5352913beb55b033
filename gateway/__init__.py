"""The mlgate HTTP gateway: an asyncio drop-in for ``mlflow server``."""

from __future__ import annotations

from gateway.version import __version__

__all__ = ["__version__", "create_app"]


def __getattr__(name: str) -> object:
    if name == "create_app":
        from gateway.app import create_app

        return create_app
    raise AttributeError(name)
