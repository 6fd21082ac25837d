"""Dependencies routes declare: the runtime's services and the caller, as Annotated aliases.

The runtime's services are read from app.state and do no I/O, so they are `async def`: FastAPI calls those on
the event loop, where a plain `def` would cost each request one trip through the thread pool per dependency.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from runyard.api.auth import require_admin, require_operator, require_principal
from runyard.runtime import Runtime
from runyard.services.runs import RunService
from runyard.services.tokens import Principal
from runyard.store.database import Store


async def get_store(request: Request) -> Store:
    runtime: Runtime = request.app.state.runtime
    return runtime.store


async def get_runs(request: Request) -> RunService:
    runtime: Runtime = request.app.state.runtime
    return runtime.runs


StoreDep = Annotated[Store, Depends(get_store)]
RunsDep = Annotated[RunService, Depends(get_runs)]
PrincipalDep = Annotated[Principal, Depends(require_principal)]
OperatorDep = Annotated[Principal, Depends(require_operator)]
AdminDep = Annotated[Principal, Depends(require_admin)]

# Ids are 32-bit integer columns: a larger number is no id (a 422, not a database error).
MAX_ID = 2**31 - 1
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
