"""The no-op ceiling: the service's renew and acquire routes with nothing behind them.

Example::

    uvicorn bench.noop_app:app --workers 2 --no-access-log

Same framework, same body models (validated the same way), an answer of the
same size, no backend: what FastAPI and uvicorn cost per request on this
machine, and so the most the service could serve.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import FastAPI, Path, Response

from leaderelection_service.api.schemas import AcquireBody, RenewBody
from leaderelection_service.records import KEY_PATTERN

app = FastAPI()

ANSWER = json.dumps(
    {
        "key": "k1234",
        "holder": "bench",
        "fencing_token": 1,
        "ttl": 15.0,
        "acquired_at": "2026-01-01T00:00:00.000000Z",
        "renewed_at": "2026-01-01T00:00:00.000000Z",
        "expires_at": "2026-01-01T00:00:15.000000Z",
        "transitions": 0,
        "held": True,
        "server_time": "2026-01-01T00:00:00.000000Z",
    }
)

Key = Annotated[str, Path(pattern=KEY_PATTERN)]


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/leases/{key}/acquire")
async def acquire(key: Key, body: AcquireBody) -> Response:
    return Response(ANSWER, media_type="application/json")


@app.post("/v1/leases/{key}/renew")
async def renew(key: Key, body: RenewBody) -> Response:
    return Response(ANSWER, media_type="application/json")
