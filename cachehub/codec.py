"""Value codecs. (Being written: see the codec brief.)"""
from __future__ import annotations

import pickle
from typing import Any, Protocol


class Codec(Protocol):
    name: str

    def dumps(self, value: Any) -> bytes: ...
    def loads(self, data: bytes) -> Any: ...


class _Temp:
    name = "temp"

    def dumps(self, value: Any) -> bytes:
        return pickle.dumps(value)

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)


def make_codec(name: str, *, signing_key: str | None = None, compress_threshold: int = 0) -> Codec:
    return _Temp()
