"""The file backend's layout on disk and its record encoding.

Example::

    name = file_name("cron")        # "63726f6e"
    key_of(name)                    # "cron"
    data = encode(record)           # b'{"crc32":"1c291ca3","key":"cron",...}'
    fields, checked = decode(data)  # (record.to_storage(), True); Torn if not whole

Layout under the backend's directory::

    leases/<name>.json    the record of a key (what readers open)
    leases/<name>.spare   the key's spare: a former record, rewritten in place
                          by the next write and then exchanged with the record
    locks/<name>.lock     the key's flock (shared by every process on the host)

``<name>`` is never a path built from raw input. A key of up to 124
characters is named by its bytes in hex, as every earlier version named every
key; a longer key (125-128 characters, which no earlier version could store:
its hex name passes the 255-byte limit of a file name) is named ``b32.`` and
its bytes in lowercase base32hex without padding (at most 4 + 205 + 6 bytes
with the longest suffix). Both forms use only ``0-9a-v`` and a dot, so a
case-insensitive filesystem never folds two keys into one file, and each keeps
the keys' byte order; a listing decodes the names and sorts by key.

Why two forms and no migration to one: processes of the earlier version may
share the directory with this one during an upgrade, and they find a key only
under its hex name. Renaming a record to another form would hide it from them
(two leaders, or a lost acknowledged write); keeping the hex form for every key
they can store means there is nothing to migrate. Rejected: the key itself as
the name (``A`` and ``a`` are one file on a case-insensitive filesystem);
base32hex for every key (needs a migration that old processes would race);
a hash (loses the order a listing needs and can collide).

A record file is the record's JSON with a CRC-32 of it as the first field.
A spare is rewritten in place (``backends.file_commit`` says why), and a
reader that opened it while it was still the record may read it during that
rewrite; the checksum tells such a torn read from a whole one, and the reader
reads again. A record without the field was written whole by an earlier
version of the service (temporary file and rename) and is taken as it is; such
a file is never rewritten in place. Trailing spaces pad a shorter record over
a longer spare's old bytes.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from typing import Any

import pydantic_core

from leaderelection_service.records import LeaseRecord, valid_key

RECORDS_DIR = "leases"
LOCKS_DIR = "locks"
RECORD_SUFFIX = ".json"
SPARE_SUFFIX = ".spare"
LOCK_SUFFIX = ".lock"

HEX_MAX_KEY = 124
"""The longest key named in hex: 248 characters and ``.spare`` are 254 bytes."""
LONG_PREFIX = "b32."

_HEAD = b'{"crc32":"'
_HEAD_END = len(_HEAD) + 8  # the 8 hex digits
_BODY_START = _HEAD_END + 2  # past '",'


class Torn(Exception):
    """The bytes read are not one whole record: read again."""


def file_name(key: str) -> str:
    if not valid_key(key):  # the HTTP layer checked already; never trust it here
        raise ValueError(f"invalid key {key!r}")
    raw = key.encode()
    if len(raw) <= HEX_MAX_KEY:
        return raw.hex()
    return _long_name(raw)


def key_of(name: str) -> str | None:
    """The key named ``name`` (without suffix), or None for a name no key has."""
    # Only the one name file_name gives: no stray file, no second name of a key.
    try:
        if name.startswith(LONG_PREFIX):
            text = name[len(LONG_PREFIX) :]
            raw = base64.b32hexdecode(text.upper() + "=" * (-len(text) % 8))
            if len(raw) <= HEX_MAX_KEY or _long_name(raw) != name:
                return None
        else:
            raw = bytes.fromhex(name)
            if len(raw) > HEX_MAX_KEY or raw.hex() != name:
                return None
        key = raw.decode()
    except (ValueError, binascii.Error):  # UnicodeDecodeError is a ValueError
        return None
    return key if valid_key(key) else None


def _long_name(raw: bytes) -> str:
    return LONG_PREFIX + base64.b32hexencode(raw).decode().rstrip("=").lower()


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
