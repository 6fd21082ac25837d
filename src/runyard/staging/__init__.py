"""Files between the stages of a run: Parquet parts, manifests and small documents (layout), kept in a
local folder or any fsspec filesystem such as S3 (storage), behind one interface."""

from runyard.staging.layout import (
    MANIFEST_NAME,
    Manifest,
    PartInfo,
    StagedRun,
    Staging,
    StagingKey,
    part_name,
    safe_name,
)
from runyard.staging.storage import LocalStorage, StagingError, Storage, open_storage

__all__ = [
    "MANIFEST_NAME",
    "LocalStorage",
    "Manifest",
    "PartInfo",
    "StagedRun",
    "Staging",
    "StagingError",
    "StagingKey",
    "Storage",
    "open_storage",
    "part_name",
    "safe_name",
]
