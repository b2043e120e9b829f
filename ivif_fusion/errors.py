"""The one base class of errors that are the user's to fix (printed as one line by the CLI).

Every user-facing error family (config, data, labels, images, checkpoints, bags, backends, ...)
derives from :class:`UserError`; the CLI and the node print such errors as one ``ERROR:`` line
instead of a traceback. This module imports nothing from the package: every layer may use it.
"""

from __future__ import annotations


class UserError(Exception):
    """Base of errors caused by inputs/configuration rather than by a bug."""


def is_user_error(e: BaseException) -> bool:
    """True for errors a user can fix: any :class:`UserError` and a plain missing file."""
    return isinstance(e, (UserError, FileNotFoundError))
