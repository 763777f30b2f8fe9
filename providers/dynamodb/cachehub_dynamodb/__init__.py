"""cachehub-dynamodb: Amazon DynamoDB as a cachehub provider (alias ``dynamodb``).

Reproduces Lucee's DynamoDB cache extension: the cache API on top of one table, plus
:func:`dynamodb_command` for direct item access (Lucee's ``DynamoDBCommand()``).
"""

from .cache import DynamoDBCache
from .command import dynamodb_command
from .errors import ConditionFailedError, ForeignEntryError
from .local import LocalDynamoDB

__all__ = [
    "DynamoDBCache",
    "dynamodb_command",
    "ConditionFailedError",
    "ForeignEntryError",
    "LocalDynamoDB",
]
