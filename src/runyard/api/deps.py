"""Dependencies routes declare: the app context's services and the caller, as Annotated aliases.

The context's services are read from app.state and do no I/O, so they are `async def`: FastAPI calls those on
the event loop, where a plain `def` would cost each request one trip through the thread pool per dependency.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from runyard.api.auth import require_admin, require_operator, require_principal
from runyard.params import MAX_ID, IdPath
from runyard.services import launch_keys
from runyard.services.app_context import AppContext
from runyard.services.runs import RunService
from runyard.services.tokens import Principal
from runyard.store.database import Store


async def get_store(request: Request) -> Store:
    context: AppContext = request.app.state.context
    return context.store


async def get_runs(request: Request) -> RunService:
    context: AppContext = request.app.state.context
    return context.runs


StoreDep = Annotated[Store, Depends(get_store)]
RunsDep = Annotated[RunService, Depends(get_runs)]
PrincipalDep = Annotated[Principal, Depends(require_principal)]
OperatorDep = Annotated[Principal, Depends(require_operator)]
AdminDep = Annotated[Principal, Depends(require_admin)]

# The optional header of the requests that make a run (launch, retry): see runyard.services.launch_keys.
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=launch_keys.KEY_PATTERN,
        description="Any unique value (a UUID): the same request sent again with it within a day answers the run "
        "the first one made instead of making another",
    ),
]

__all__ = ["MAX_ID", "AdminDep", "IdPath", "IdempotencyKey", "OperatorDep", "PrincipalDep", "RunsDep", "StoreDep"]
