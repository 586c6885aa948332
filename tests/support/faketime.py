"""A child process whose wall clock is set apart by libfaketime (Debian ``faketime``).

Example::

    env = skewed_env(+4.0)    # {"LD_PRELOAD": ".../libfaketimeMT.so.1", "FAKETIME": "+4.0", ...}
    ServiceProcess(url, env=env)            # its time.time() runs 4 s ahead

Only the wall clock moves (``FAKETIME_DONT_FAKE_MONOTONIC=1``): that is the
clock a GCS replica decides expiry by, and event loops and timeouts keep
running on the true monotonic clock. The multi-threaded build of the library
is used since the service runs threads. A missing library goes through
``needs.missing``.
"""

from __future__ import annotations

import glob
import shutil

from support.needs import missing


def libfaketime() -> str | None:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    found += sorted(glob.glob("/usr/lib/faketime/libfaketimeMT.so.1"))
    return found[0] if found and shutil.which("faketime") else None


def skewed_env(seconds: float) -> dict[str, str]:
    """The environment that runs a child ``seconds`` ahead (negative: behind) of true time."""
    lib = libfaketime()
    if lib is None:
        missing("libfaketime (the faketime package)", "apt-get install -y faketime")
        raise AssertionError("unreachable")
    return {
        "LD_PRELOAD": lib,
        "FAKETIME": f"{seconds:+.3f}",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
