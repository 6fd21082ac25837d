"""The demo's landing folder: a few store sales exports, as a point-of-sale system would drop them each day.

`drop_demo_files(<root>/landing)` writes them; the demo-stores-archive operation copies them from `landing` to
`archive` (both folders under the first allowed root, RUNYARD_STORAGE_ROOTS, by default <home>/files).
"""

from __future__ import annotations

import os
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

OPERATION = Path(__file__).parent / "operations" / "demo-stores-archive.yaml"
PRODUCTS = ("espresso beans", "oat milk", "croissant", "green tea", "sparkling water", "granola", "dark chocolate")


def drop_demo_files(folder: Path, count: int = 3) -> list[Path]:
    """Write stores-1.csv ... stores-<count>.csv (a week of sales of one store each) into `folder`.

    Each is written under a temporary name and renamed, as a careful exporter does, and dated one minute
    apart, so the archive's names (`stores-<date>-<time>.csv`, from the files' times) differ. The rows are the
    same from one call to the next (seeded by the store's number).
    """
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    now = datetime.now(UTC).replace(microsecond=0)
    for number in range(1, count + 1):
        path = folder / f"stores-{number}.csv"
        temporary = folder / f".{path.name}.part"
        temporary.write_text(_sales(number, now.date()), encoding="utf-8")
        os.replace(temporary, path)
        moment = (now - timedelta(minutes=count - number)).timestamp()
        os.utime(path, (moment, moment))
        written.append(path)
    return written


def _sales(store: int, today: date) -> str:
    rows = ["store_id,day,product,quantity,unit_price,total"]
    chosen = random.Random(store)  # demo data: the same rows at every start
    for back in range(7, 0, -1):
        day = today - timedelta(days=back)
        for product in chosen.sample(PRODUCTS, 4):
            quantity = chosen.randint(3, 60)
            price = chosen.choice((1.2, 2.5, 3.9, 4.75, 6.0, 8.4))
            rows.append(f"{store},{day.isoformat()},{product},{quantity},{price:.2f},{quantity * price:.2f}")
    return "\n".join(rows) + "\n"
