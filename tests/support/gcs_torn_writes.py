"""fake-gcs-server alone, restarted under generation-guarded writes: does an object
written and acknowledged ever read as absent again?

Example::

    PYTHONPATH=tests .venv/bin/python -m support.gcs_torn_writes --restarts 30 --keys 10
    # restarts 30, writes acknowledged 5120, anomalies 4
    #   k007 after restart 6: object file without metadata (no user.metadata xattr)
    #   k007: read 404 after write n=22 was acknowledged
    #   k007: create-if-absent (ifGenerationMatch=0) accepted after n=22 was acknowledged

No service of ours takes part: one thread per object reads it (body and
``x-goog-generation``), writes the next counter with ``ifGenerationMatch`` set
to the generation read, and remembers the last counter the emulator
acknowledged; meanwhile the emulator is stopped with SIGTERM (as the chaos
stage's ``restart_backend`` does) and started again on the same data. While it
is stopped, every object file is checked for its metadata.

Why an object can vanish: the filesystem backend writes an object in two steps
(the body by temp file and rename, then its metadata, generation included, as
the ``user.metadata`` extended attribute, or a ``.metadata`` side file where
xattrs are missing), and the process exits on SIGTERM without waiting for its
requests. Killed between the steps, the object is a new body with no metadata;
from then on the emulator answers 404 to a read and, since it takes a failed
metadata read for "no object", accepts a create with ``ifGenerationMatch=0``.
Real GCS writes an object, body and metadata, atomically, so neither happens
there. The chaos stage checks for such objects at each restart
(``GcsEmulator.torn_objects``) and the checker counts their token resets apart.

A checker comparing counters across threads was rejected: its own races would
report "went back" where the emulator did nothing wrong; each thread judges
only its own acknowledged writes.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from support.gcs import GcsEmulator

BUCKET = "torn-writes"


@dataclass
class Findings:
    acknowledged: int = 0
    anomalies: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, text: str) -> None:
        with self.lock:
            self.anomalies.append(text)


def _writer(base: str, key: str, stop: threading.Event, found: Findings) -> None:
    http = requests.Session()
    acked = 0  # the last counter the emulator acknowledged for this key
    obj = f"{base}/storage/v1/b/{BUCKET}/o/{key}"
    upload = f"{base}/upload/storage/v1/b/{BUCKET}/o"
    while not stop.is_set():
        try:
            r = http.get(obj, params={"alt": "media"}, timeout=2)
            if r.status_code == 404:
                if acked:
                    found.add(f"{key}: read 404 after write n={acked} was acknowledged")
                gen, n = 0, 0
            elif r.status_code == 200:
                gen, n = int(r.headers["x-goog-generation"]), json.loads(r.content)["n"]
                if n < acked:
                    found.add(f"{key}: read n={n} after n={acked} was acknowledged")
            else:
                continue
            w = http.post(
                upload,
                params={"uploadType": "media", "name": key, "ifGenerationMatch": str(gen)},
                data=json.dumps({"n": n + 1}),
                headers={"content-type": "application/json"},
                timeout=2,
            )
            if w.status_code == 200:
                if gen == 0 and acked:
                    found.add(
                        f"{key}: create-if-absent (ifGenerationMatch=0) accepted after "
                        f"n={acked} was acknowledged"
                    )
                acked = n + 1
                with found.lock:
                    found.acknowledged += 1
        except requests.RequestException:
            stop.wait(0.01)  # the emulator is restarting


def run(restarts: int, keys: int, root: Path, seed: int = 1, *, first: bool = False) -> Findings:
    """``restarts`` restarts under writes (with ``first``, only until a torn object shows)."""
    rng = random.Random(seed)
    found = Findings()
    stop = threading.Event()
    with GcsEmulator(root=root / "data", log_path=root / "emulator.log") as emu:
        emu.create_bucket(BUCKET)
        names = [f"k{i:03d}" for i in range(keys)]
        threads = [
            threading.Thread(target=_writer, args=(emu.url, k, stop, found), daemon=True)
            for k in names
        ]
        for t in threads:
            t.start()
        try:
            for i in range(restarts):
                time.sleep(rng.uniform(0.2, 0.6))  # writes in flight at a random moment
                emu.stop()
                torn = emu.torn_objects(BUCKET)
                for key in torn:
                    found.add(f"{key} after restart {i}: object file without metadata")
                emu.start()
                if first and torn:
                    break
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=5)
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--restarts", type=int, default=30)
    ap.add_argument("--keys", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        found = run(args.restarts, args.keys, Path(tmp), args.seed)
    print(
        f"restarts {args.restarts}, writes acknowledged {found.acknowledged}, "
        f"anomalies {len(found.anomalies)}"
    )
    for a in found.anomalies:
        print("  " + a)


if __name__ == "__main__":
    main()
