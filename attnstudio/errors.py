"""Errors a user can cause and read: each carries one clear sentence."""


class AttnStudioError(Exception):
    """Base of every error that is shown to a user rather than a traceback."""


class InvalidSetting(AttnStudioError, ValueError):
    """A setting (heads, d_k, mask, score, ...) that cannot be applied."""


class BackendUnavailable(AttnStudioError):
    """The requested compute backend cannot run on this machine."""


class ModelLoadError(AttnStudioError):
    """A model folder that is missing, damaged or not BERT-family."""


class SessionFileError(AttnStudioError):
    """A session file that cannot be read or written."""


class FileWriteError(AttnStudioError):
    """An output file (session, image, data) that cannot be written."""


class FileReadError(AttnStudioError):
    """An input file (mask, text) that cannot be read: missing, not a regular file, too large."""
