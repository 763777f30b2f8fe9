"""cachehub-dynamodb: Amazon DynamoDB as a cachehub provider (alias ``dynamodb``).

Reproduces Lucee's DynamoDB cache extension: the cache API on top of one table, plus
:func:`dynamodb_command` for direct item access (Lucee's ``DynamoDBCommand()``).

The names are imported on first access, so loading the plugin (``cachehub --help``, say)
does not import botocore.
"""

from typing import TYPE_CHECKING

from cachehub.plugins import lazy_exports

__all__ = [
    "DynamoDBCache",
    "dynamodb_command",
    "ConditionFailedError",
    "ForeignEntryError",
    "LocalDynamoDB",
]

if TYPE_CHECKING:
    from .cache import DynamoDBCache
    from .command import dynamodb_command
    from .errors import ConditionFailedError, ForeignEntryError
    from .local import LocalDynamoDB
    from .lucee import LuceeDynamoDBCache  # noqa: F401
else:  # run time only: type checkers see the real names and still flag a misspelt one
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "DynamoDBCache": ".cache",
            "dynamodb_command": ".command",
            "ConditionFailedError": ".errors",
            "ForeignEntryError": ".errors",
            "LocalDynamoDB": ".local",
            "LuceeDynamoDBCache": ".lucee",
        },
    )
