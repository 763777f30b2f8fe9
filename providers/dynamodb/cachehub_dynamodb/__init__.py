"""cachehub-dynamodb: Amazon DynamoDB as a cachehub provider (alias ``dynamodb``).

Reproduces Lucee's DynamoDB cache extension: the cache API on top of one table, plus
:func:`dynamodb_command` for direct item access (Lucee's ``DynamoDBCommand()``).
"""

from .cache import DynamoDBCache
from .command import dynamodb_command
from .errors import ConditionFailedError, ForeignEntryError
from .local import LocalDynamoDB

# The Lucee item layout subclasses DynamoDBCache, so cache.py imports it lazily; loaded
# here with the package, a first get_all() or Lucee-format cache never imports (compiles,
# reads from disk) it on an event loop.
from .lucee import LuceeDynamoDBCache  # noqa: F401  isort: skip

__all__ = [
    "DynamoDBCache",
    "dynamodb_command",
    "ConditionFailedError",
    "ForeignEntryError",
    "LocalDynamoDB",
]
