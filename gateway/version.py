"""The running mlgate's version, in a module of its own so that anything in the gateway
can name it without importing the package's ``__init__`` (which reaches the app)."""

__version__ = "0.1.0"
