"""advgen: a plugin-based adversarial data generator for security machine learning."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("advgen")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
