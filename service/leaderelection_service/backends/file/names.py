"""The file backend's layout on disk: its directories, suffixes, and each key's file name.

Example::

    name = file_name("cron")        # "63726f6e"
    key_of(name)                    # "cron"
    f"{RECORDS_DIR}/{name}{RECORD_SUFFIX}"  # "leases/63726f6e.json"

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
"""

from __future__ import annotations

import base64
import binascii

from leaderelection_service.records import valid_key

RECORDS_DIR = "leases"
LOCKS_DIR = "locks"
RECORD_SUFFIX = ".json"
SPARE_SUFFIX = ".spare"
LOCK_SUFFIX = ".lock"

HEX_MAX_KEY = 124
"""The longest key named in hex: 248 characters and ``.spare`` are 254 bytes."""
LONG_PREFIX = "b32."


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
