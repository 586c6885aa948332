"""Python code run where some libraries cannot be imported, as if not installed.

Example::

    out = run_without(["fastapi", "uvicorn"], "import leaderelection; print('ok')")
    assert out.returncode == 0, out.stderr

The interpreter is the suite's own, started with ``-I``, with a meta-path
finder in front that answers each blocked top-level package as Python answers
one that is not installed: ``ModuleNotFoundError`` naming it. A second
virtualenv with only the client installed was rejected: building it takes
minutes and the network, while the finder shows the same import errors.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

FINDER = textwrap.dedent(
    """\
    import importlib.abc, sys

    BLOCKED = {blocked!r}

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.split(".")[0]
            if top in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{top!r}}", name=top)
            return None

    sys.meta_path.insert(0, NotInstalled())
    """
)


def run_without(
    blocked: list[str], code: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Runs ``code`` (dedented) after the finder; stdout and stderr captured as text."""
    script = FINDER.format(blocked=blocked) + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=timeout
    )
