"""Users and API tokens of your account (administrators)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from runyard.api.deps import AdminDep, IdPath, StoreDep
from runyard.api.schemas import StrictBody
from runyard.services import accounts, tokens

router = APIRouter(prefix="/api/v1", tags=["users and tokens"])


class UserCreate(StrictBody):
    login: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=8, max_length=1000)
    role: Literal["administrator", "operator", "viewer"] = "viewer"


class UserPublic(BaseModel):
    id: int
    login: str
    role: str
    active: bool
    created_at: datetime


class TokenCreate(StrictBody):
    name: str = Field(min_length=1, max_length=200)


class TokenPublic(BaseModel):
    id: int
    name: str
    prefix: str
    user_id: int
    login: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(BaseModel):
    id: int
    name: str
    token: str = Field(description="The secret: shown once, stored only hashed")


@router.get("/users", response_model=list[UserPublic])
def list_users(store: StoreDep, principal: AdminDep) -> list[UserPublic]:
    return [
        UserPublic(id=u.id, login=u.login, role=u.role.value, active=u.active, created_at=u.created_at)
        for u in tokens.list_users(store, principal.account_id)
    ]


@router.post("/users", status_code=201, response_model=UserPublic)
def create_user(body: UserCreate, store: StoreDep, principal: AdminDep) -> UserPublic:
    """A user in your account. Logins are unique across accounts."""
    user_id = accounts.create_user(
        store, account=principal.account, login=body.login, password=body.password, role=body.role
    )
    (user,) = [u for u in tokens.list_users(store, principal.account_id) if u.id == user_id]
    return UserPublic(
        id=user.id, login=user.login, role=user.role.value, active=user.active, created_at=user.created_at
    )


@router.delete("/users/{user_id}", status_code=204)
def deactivate_user(user_id: IdPath, store: StoreDep, principal: AdminDep) -> Response:
    """Revoke a user: they can no longer log in, and their tokens stop working."""
    accounts.deactivate_user(store, principal.account_id, user_id, acting_user_id=principal.user_id)
    return Response(status_code=204)


@router.get("/tokens", response_model=list[TokenPublic])
def list_tokens(store: StoreDep, principal: AdminDep) -> list[TokenPublic]:
    return [
        TokenPublic(
            id=t.id,
            name=t.name,
            prefix=t.prefix,
            user_id=t.user_id,
            login=t.login,
            created_at=t.created_at,
            last_used_at=t.last_used_at,
            revoked_at=t.revoked_at,
        )
        for t in tokens.list_api_tokens(store, principal.account_id)
    ]


@router.post("/tokens", status_code=201, response_model=TokenCreated)
def create_token(body: TokenCreate, store: StoreDep, principal: AdminDep) -> TokenCreated:
    """A long-lived API token for you, for the TOKEN header (spec 002) or as a bearer. Shown once."""
    token_id, secret = tokens.create_api_token(store, principal.user_id, body.name)
    return TokenCreated(id=token_id, name=body.name, token=secret)


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: IdPath, store: StoreDep, principal: AdminDep) -> Response:
    tokens.revoke_api_token(store, principal.account_id, token_id)
    return Response(status_code=204)
