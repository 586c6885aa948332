"""The client's version: the one in pyproject.toml, as installed (also the service's)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("leaderelection")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
