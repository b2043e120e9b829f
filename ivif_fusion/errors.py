"""Which exceptions are the user's to fix (printed as one line by the CLI) rather than bugs.

New modules raise a subclass of :class:`UserError` for anything a user can fix (bad file,
missing weights, wrong option); the CLI prints it as one ``ERROR:`` line.
"""

from __future__ import annotations


class UserError(Exception):
    """Base of errors caused by inputs/configuration rather than by a bug."""


def is_user_error(e: BaseException) -> bool:
    from .config import ConfigError
    from .data.labels import LabelError
    from .data.paired import PairError
    from .imageops import ImageError
    from .models.checkpoint import CheckpointError
    from .paths import DataRootMissing

    return isinstance(e, (UserError, ConfigError, PairError, LabelError, ImageError, CheckpointError,
                          DataRootMissing, FileNotFoundError))
