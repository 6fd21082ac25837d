"""Deterministic HR rows for the demo source, generated one row at a time from its index.

Every row is a pure function of (seed, table, index) so the source can serve a million rows without
ever holding them all: a page is built from the indexes it covers. Only ``time_off`` has mutable
state (:class:`TimeOffLog`): rows appended or re-touched after start-up get a later ``updated_at``.
"""

from __future__ import annotations

import hashlib
import math
import random
import struct
import time
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, TypeVar

Row = dict[str, Any]
T = TypeVar("T")

DEPARTMENT_COUNT = 50

FIRST_NAMES = (
    "Ada", "Alan", "Amara", "Ana", "Arjun", "Beatriz", "Bruno", "Chen", "Chloe", "Dmitri",
    "Elena", "Emeka", "Farah", "Felix", "Grace", "Hana", "Hugo", "Ines", "Ivan", "Jamal",
    "Jana", "Kenji", "Lara", "Leon", "Lucia", "Malik", "Maya", "Mateo", "Nadia", "Noah",
    "Olga", "Omar", "Priya", "Rafael", "Sara", "Sofia", "Tariq", "Umar", "Yara", "Zoe",
)  # fmt: skip
LAST_NAMES = (
    "Abbott", "Adeyemi", "Almeida", "Bauer", "Becker", "Chen", "Costa", "Dubois", "Eriksen", "Fischer",
    "Garcia", "Gupta", "Hansen", "Haddad", "Ito", "Jansen", "Kaur", "Kim", "Kowalski", "Larsen",
    "Lopez", "Mbeki", "Meyer", "Moreau", "Nakamura", "Novak", "Okafor", "Patel", "Petrov", "Quinn",
    "Rossi", "Santos", "Schmidt", "Silva", "Tanaka", "Varga", "Weber", "Wong", "Yilmaz", "Zhang",
)  # fmt: skip
SKILLS = (
    "python", "sql", "excel", "negotiation", "java", "go", "rust", "accounting", "recruiting",
    "public speaking", "kubernetes", "design", "copywriting", "forecasting", "support", "legal",
)  # fmt: skip
DEPARTMENT_NAMES = (
    "Engineering", "Sales", "Marketing", "Finance", "People", "Legal", "Operations", "Support",
    "Research", "Design",
)  # fmt: skip
CITIES = (
    ("Berlin", "Germany"), ("Lisbon", "Portugal"), ("Toronto", "Canada"), ("Austin", "United States"),
    ("Singapore", "Singapore"),
)  # fmt: skip
TIME_OFF_KINDS = ("vacation", "vacation", "vacation", "sick", "sick", "parental", "training", "unpaid")
TIME_OFF_DAYS = (0.5, 1.0, 1.0, 2.0, 3.0, 5.0, 10.0)

_HIRE_START = 1_325_376_000  # 2012-01-01T00:00:00Z
_DATA_END = 1_735_603_200  # 2024-12-31T00:00:00Z
_TIME_OFF_START = 1_704_067_200  # 2024-01-01T00:00:00Z: updated_at of time_off row 1
_TIME_OFF_STEP = 60  # seconds between consecutive time_off updated_at values
_LEAVE_START = date(2023, 1, 1)

_EMPLOYEE_SALT = 1
_DEPARTMENT_SALT = 2
_TIME_OFF_SALT = 3


_TABLE_START = 1_104_537_600  # 2005-01-01T00:00:00Z
_TABLE_DAYS = 30 * 366
_DAY_PREFIXES = tuple(
    time.strftime("%Y-%m-%dT", time.gmtime(_TABLE_START + day * 86_400)) for day in range(_TABLE_DAYS)
)
_MINUTE_PARTS = tuple(f"{m // 60:02d}:{m % 60:02d}:" for m in range(1440))
_SECOND_PARTS = tuple(f"{sec:02d}Z" for sec in range(60))


def iso_timestamp(epoch_seconds: int) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ``; table lookups, because strftime is a large share of a row's cost."""
    day, second_of_day = divmod(epoch_seconds - _TABLE_START, 86_400)
    if not 0 <= day < _TABLE_DAYS:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_seconds))
    minute, second = divmod(second_of_day, 60)
    return _DAY_PREFIXES[day] + _MINUTE_PARTS[minute] + _SECOND_PARTS[second]


_WORDS = struct.Struct("<16I")


class _Draws:
    """Random draws for one row, from a keyed hash of (seed, table, index).

    Seeding ``random.Random`` per row costs more than building the row; one blake2b digest gives
    sixteen 32-bit draws for well under a microsecond.
    """

    __slots__ = ("_block", "_key", "_next", "_words")

    def __init__(self, seed: int, salt: int, index: int) -> None:
        self._key = b"%d:%d:%d:" % (seed, salt, index)
        self._block = 0
        self._refill()

    def _refill(self) -> None:
        digest = hashlib.blake2b(self._key + b"%d" % self._block, digest_size=64).digest()
        self._words = _WORDS.unpack(digest)
        self._next = 0
        self._block += 1

    def bits(self) -> int:
        if self._next == len(self._words):
            self._refill()
        word: int = self._words[self._next]
        self._next += 1
        return word

    def below(self, n: int) -> int:
        return self.bits() % n

    def between(self, low: int, high: int) -> int:
        return low + self.bits() % (high - low + 1)

    def unit(self) -> float:
        return self.bits() / 4_294_967_296  # 2**32

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.unit()

    def pick(self, options: Sequence[T]) -> T:
        return options[self.bits() % len(options)]

    def sample(self, options: Sequence[T], k: int) -> list[T]:
        pool = list(options)
        for i in range(k):
            j = i + self.bits() % (len(pool) - i)
            pool[i], pool[j] = pool[j], pool[i]
        return pool[:k]


def _department_location(index: int) -> dict[str, str]:
    city, country = CITIES[index // len(DEPARTMENT_NAMES)]
    return {"city": city, "country": country}


def _department_name(index: int) -> str:
    return f"{DEPARTMENT_NAMES[index % len(DEPARTMENT_NAMES)]} {CITIES[index // len(DEPARTMENT_NAMES)][0]}"


def _skill_sets(count: int = 1024) -> tuple[list[str], ...]:
    # Rows share these lists (they are only serialized); drawing a fresh sample per row is slow.
    rng = _Draws(0, 0, 0)
    return tuple(rng.sample(SKILLS, rng.between(0, 4)) for _ in range(count))


_SKILL_SETS = _skill_sets()


def department_refs() -> tuple[Row, ...]:
    """The nested ``department`` objects employees embed, one per department, by index."""
    return tuple(
        {"id": i + 1, "name": _department_name(i), "location": _department_location(i)} for i in range(DEPARTMENT_COUNT)
    )


def department_row(seed: int, employees: int, index: int) -> Row:
    rng = _Draws(seed, _DEPARTMENT_SALT, index)
    head = None if employees == 0 or rng.unit() < 0.1 else rng.between(1, employees)
    return {
        "id": index + 1,
        "name": _department_name(index),
        "budget": round(rng.uniform(200_000, 5_000_000), 2),
        "head_employee_id": head,
        "created_at": iso_timestamp(_HIRE_START - rng.below(5 * 365 * 86_400)),
    }


def employee_row(seed: int, employees: int, index: int, departments: Sequence[Row]) -> Row:
    rng = _Draws(seed, _EMPLOYEE_SALT, index)
    emp_id = index + 1
    first, last = rng.pick(FIRST_NAMES), rng.pick(LAST_NAMES)
    hired = _HIRE_START + rng.below(_DATA_END - _HIRE_START)
    row: Row = {
        "id": emp_id,
        "first_name": first,
        "last_name": last,
        "email": f"{first}.{last}.{emp_id}@example.com".lower(),
        "hired_at": iso_timestamp(hired),
        "salary": None if rng.unit() < 0.05 else round(rng.uniform(38_000, 210_000), 2),
        "manager_id": None if emp_id <= 5 else rng.between(1, min(emp_id - 1, max(5, employees // 20))),
        "department": departments[rng.below(len(departments))],
        "skills": _SKILL_SETS[rng.below(len(_SKILL_SETS))],
        "active": rng.unit() < 0.92,
        "updated_at": iso_timestamp(hired + rng.below(_DATA_END - hired + 1)),
    }
    # The schema drifts halfway through, so extraction has to cope with a column that appears late.
    if index >= employees // 2:
        row["cost_center"] = f"CC-{rng.between(1000, 9999)}"
    return row


def time_off_row(seed: int, employees: int, index: int, updated_at: int, revision: int) -> Row:
    rng = _Draws(seed, _TIME_OFF_SALT, index)
    start = _LEAVE_START + timedelta(days=rng.below(730))
    days = rng.pick(TIME_OFF_DAYS) + 0.5 * revision
    approved: bool | None = rng.pick((True, True, True, False, None))
    return {
        "id": index + 1,
        "employee_id": 1 + rng.below(max(employees, 1)),
        "kind": rng.pick(TIME_OFF_KINDS),
        "start_date": start.isoformat(),
        "end_date": (start + timedelta(days=max(math.ceil(days) - 1, 0))).isoformat(),
        "days": days,
        "approved": True if revision else approved,
        "updated_at": iso_timestamp(updated_at),
    }


@dataclass
class TimeOffLog:
    """Which time_off rows exist and their ``updated_at`` order.

    Rows ``1..initial`` start with ``updated_at`` ascending by id. Rows added or re-touched later live in
    ``_moved`` (id -> epoch seconds), kept in insertion order, which is also ascending timestamp order
    because each one is stamped later than everything before it. Timestamps are unique, so "strictly
    after a timestamp" is an exact resume point.
    """

    seed: int
    initial: int
    count: int = 0
    version: int = 0
    _moved: dict[int, int] = field(default_factory=dict)
    _revisions: dict[int, int] = field(default_factory=dict)
    _order: Sequence[int] | None = None

    def __post_init__(self) -> None:
        self.count = self.initial

    def updated_at(self, row_id: int) -> int:
        moved = self._moved.get(row_id)
        return moved if moved is not None else _TIME_OFF_START + (row_id - 1) * _TIME_OFF_STEP

    def revision(self, row_id: int) -> int:
        return self._revisions.get(row_id, 0)

    def order(self) -> Sequence[int]:
        """Row ids in ascending ``updated_at`` order."""
        if self._order is None:
            if self._moved:
                moved = self._moved
                unmoved = [i for i in range(1, self.initial + 1) if i not in moved]
                self._order = unmoved + list(moved)
            else:
                self._order = range(1, self.count + 1)
        return self._order

    def position_after(self, epoch_seconds: float) -> int:
        """Index in :meth:`order` of the first row updated strictly after ``epoch_seconds``."""
        return bisect_right(self.order(), epoch_seconds, key=self.updated_at)

    def latest(self) -> int | None:
        order = self.order()
        return self.updated_at(order[-1]) if order else None

    def add(self, count: int, update: int) -> None:
        """Re-touch ``update`` existing rows, then append ``count`` new ones, all stamped after every row."""
        clock = self.latest() or _TIME_OFF_START - _TIME_OFF_STEP
        picker = random.Random(self.seed * 1_000_003 + self.version)
        for row_id in sorted(picker.sample(range(1, self.count + 1), min(update, self.count))):
            clock += _TIME_OFF_STEP
            self._moved.pop(row_id, None)
            self._moved[row_id] = clock
            self._revisions[row_id] = self._revisions.get(row_id, 0) + 1
        for row_id in range(self.count + 1, self.count + count + 1):
            clock += _TIME_OFF_STEP
            self._moved[row_id] = clock
        self.count += count
        self.version += 1
        self._order = None
