"""The postgres-cdc configuration: tables of a PostgreSQL database kept in step with warehouse tables.

    configuration_type: postgres-cdc
    configuration_id: shop_cdc
    source:
      url_env: SHOP_PG_URL          # an environment variable holding postgresql://user:password@host/db
    tables: [public.orders, public.customers]
    slot: runyard_shop              # optional: the replication slot (default from account, id and environment)
    batch_max_changes: 10000        # optional: at most this many changes per warehouse load
    poll_seconds: 1.0               # optional: how often an idle stream asks the source for changes

Each table lands in the warehouse table of its name without the schema (`public.orders` -> `orders`). The
URL (and its password) is read from the environment when the task runs, never written in the configuration.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator

from runyard.operations.postgres_cdc.plan import SLOT_MAX, target_name
from runyard.operations.spec import ENV_VAR_NAME, OperationBase, StrictModel, invalid

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_$]{0,62}"
_TABLE = re.compile(rf"{_IDENTIFIER}\.{_IDENTIFIER}")
_SLOT = re.compile(rf"[a-z0-9_]{{1,{SLOT_MAX}}}")
_RESERVED_PREFIX = "_runyard"


def _env_name(value: str) -> str:
    if not ENV_VAR_NAME.fullmatch(value):
        raise invalid(
            f"{value!r} is not an environment variable name (letters, digits and underscores, e.g. SHOP_PG_URL); "
            "put the source's postgresql:// URL in that variable, never in the configuration"
        )
    return value


def _table(value: str) -> str:
    if not _TABLE.fullmatch(value):
        raise invalid(
            f"{value!r} is not a table named with its schema, such as public.orders (letters, digits and '_', "
            "as the source's catalog spells them)"
        )
    if target_name(value).lower().startswith(_RESERVED_PREFIX):
        raise invalid(f"{value!r}: warehouse tables starting with {_RESERVED_PREFIX!r} are runyard's own")
    return value


class SourceSpec(StrictModel):
    url_env: Annotated[str, AfterValidator(_env_name)] = Field(
        description="The environment variable holding the source's postgresql:// URL (with its password)"
    )


class PostgresCdcOperation(OperationBase):
    """Tables of a PostgreSQL database replicated into warehouse tables through a logical replication slot."""

    configuration_type: Literal["postgres-cdc"]
    source: SourceSpec
    tables: list[Annotated[str, AfterValidator(_table)]] = Field(
        min_length=1, description="The source tables, each as schema.table, each with a primary key"
    )
    slot: str | None = Field(default=None, description="The logical replication slot this operation owns")
    batch_max_changes: int = Field(default=10_000, ge=1, le=1_000_000)
    poll_seconds: float = Field(default=1.0, gt=0, le=300)

    @field_validator("tables")
    @classmethod
    def _one_table_per_target(cls, value: list[str]) -> list[str]:
        seen: dict[str, str] = {}
        for table in value:
            target = target_name(table).lower()  # the warehouse folds unquoted names
            if target in seen:
                raise invalid(
                    f"{seen[target]!r} and {table!r} would both load the warehouse table {target_name(table)!r}; "
                    "replicate tables of different names"
                )
            seen[target] = table
        return value

    @field_validator("slot")
    @classmethod
    def _slot(cls, value: str | None) -> str | None:
        if value is not None and not _SLOT.fullmatch(value):
            raise invalid(
                f"{value!r} is not a replication slot name: lower-case letters, digits and '_', at most {SLOT_MAX}"
            )
        return value
