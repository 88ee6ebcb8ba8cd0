"""The MD5 digests SQS answers a send and a receive with, computed exactly as SQS does: boto3
(and every other SDK) recomputes them and refuses a response whose digests differ."""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Mapping
from typing import Any

#: Transport type bytes of SQS's attribute digest: strings (and numbers) 1, binary 2.
_STRING, _BINARY = 1, 2


def md5_of_body(body: str) -> str:
    return hashlib.md5(body.encode(), usedforsecurity=False).hexdigest()


def md5_of_attributes(attributes: Mapping[str, Mapping[str, Any]]) -> str | None:
    """SQS's digest of message attributes: for each attribute in name order, the name, the data
    type and the value, each prefixed with its 4-byte big-endian length, the value after a
    transport-type byte. Binary values arrive base64-encoded (the JSON protocol's blobs)."""
    if not attributes:
        return None
    digest = hashlib.md5(usedforsecurity=False)
    for name in sorted(attributes):
        value = attributes[name]
        _field(digest, name.encode())
        _field(digest, str(value["DataType"]).encode())
        if "BinaryValue" in value:
            digest.update(bytes([_BINARY]))
            _field(digest, base64.b64decode(value["BinaryValue"]))
        else:
            digest.update(bytes([_STRING]))
            _field(digest, str(value["StringValue"]).encode())
    return digest.hexdigest()


def _field(digest: Any, data: bytes) -> None:
    digest.update(struct.pack(">I", len(data)))
    digest.update(data)
