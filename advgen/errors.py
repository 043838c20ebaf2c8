"""The project's error types.

Everything a user can get wrong (a missing file, a malformed CSV, an unknown plugin, a corrupted
checkpoint, an absurd argument) raises :class:`AdvgenError`; the command line turns it into one clear
line and a non-zero exit.
"""


class AdvgenError(Exception):
    """A problem with the user's input or environment, reported as one line without a traceback."""


class InvalidDataError(AdvgenError):
    """Input data is missing, malformed or inconsistent with what a domain expects."""


class PluginError(AdvgenError):
    """A plugin could not be found, loaded or validated."""


class CheckpointError(AdvgenError):
    """A checkpoint or run directory is missing, truncated or corrupted."""
