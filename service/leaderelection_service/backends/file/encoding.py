"""The file backend's record encoding: a record's JSON with a checksum.

Example::

    data = encode(record)           # b'{"crc32":"1c291ca3","key":"cron",...}'
    fields, checked = decode(data)  # (record.to_storage(), True); Torn if not whole

A record file is the record's JSON with a CRC-32 of it as the first field.
A spare is rewritten in place (``committer.py`` says why), and a
reader that opened it while it was still the record may read it during that
rewrite; the checksum tells such a torn read from a whole one, and the reader
reads again. A record without the field was written whole by an earlier
version of the service (temporary file and rename) and is taken as it is; such
a file is never rewritten in place. Trailing spaces pad a shorter record over
a longer spare's old bytes.
"""

from __future__ import annotations

import zlib
from typing import Any

import pydantic_core

from leaderelection_service.records import LeaseRecord

_HEAD = b'{"crc32":"'
_HEAD_END = len(_HEAD) + 8  # the 8 hex digits
_BODY_START = _HEAD_END + 2  # past '",'


class Torn(Exception):
    """The bytes read are not one whole record: read again."""


def encode(record: LeaseRecord) -> bytes:
    # pydantic-core's JSON: the same compact JSON as the json module's, a quarter
    # of the time on every write and read (the file backend's largest CPU cost).
    body = pydantic_core.to_json(record.to_storage())
    return b'%s%08x",%s' % (_HEAD, zlib.crc32(body), body[1:])


def decode(data: bytes) -> tuple[dict[str, Any], bool]:
    """The stored fields, and whether a checksum vouched for them.

    Raises ``Torn`` when the checksum does not match or the JSON is cut.
    """
    text = data.rstrip(b" ")
    if text.startswith(_HEAD):
        body = b"{" + text[_BODY_START:]
        if text[_HEAD_END:_BODY_START] != b'",' or text[len(_HEAD) : _HEAD_END] != (
            b"%08x" % zlib.crc32(body)
        ):
            raise Torn
        checked = True
    else:
        body, checked = text, False
    try:
        fields = pydantic_core.from_json(body)
    except ValueError as exc:
        raise Torn from exc
    if not isinstance(fields, dict):
        raise Torn
    return fields, checked


def padded(data: bytes, size: int) -> bytes:
    """``data`` padded with spaces to ``size`` bytes, to overwrite a longer file in place."""
    return data + b" " * (size - len(data)) if len(data) < size else data
