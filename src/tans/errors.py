"""The errors tans raises: one root, :class:`TansError`, and one subclass per kind of problem.

Catch :class:`TansError` for every problem a user can fix; catch a subclass to tell them apart::

    TansError          a problem with the user's input or environment
    ├── DatasetError   a dataset that cannot be found, read or used (loaders, built-in sources)
    ├── ZooError       a zoo, zoo entry, transfer record or zoo archive that is missing or malformed
    ├── SearchError    a search that cannot run: constraints, an unusable searcher artifact
    └── ConfigError    a config file or setting that is missing, unparsable or has unknown keys

The command line prints any of them as one ``error: ...`` line and exits with status 2.
"""

from __future__ import annotations

__all__ = ["ConfigError", "DatasetError", "SearchError", "TansError", "TansWarning", "ZooError"]


class TansError(Exception):
    """A problem with the user's input or environment, explained in one line.

    The message says what was expected, what arrived and how to fix it. The command line prints
    it without a traceback and exits with status 2.
    """


class DatasetError(TansError):
    """A dataset that cannot be found, read or used: loaders, built-in sources, dataset checks."""


class ZooError(TansError):
    """A zoo, zoo entry, transfer record or zoo archive that is missing, malformed or refused."""


class SearchError(TansError):
    """A search that cannot run: constraints no model meets, an unusable searcher artifact."""


class ConfigError(TansError):
    """A config file or setting that is missing, unparsable, of the wrong type or has unknown keys."""


class TansWarning(UserWarning):
    """Something was skipped or degraded but the work went on (e.g. unreadable files skipped).

    The command line prints it as one ``warning: ...`` line.
    """
