"""The demo: operations that ship with runyard, and the HR API they read, so a newcomer sees real runs at once."""

from __future__ import annotations

from pathlib import Path

from runyard.operations.loader import load_text
from runyard.operations.spec import OperationBase as OperationSpec

OPERATIONS = Path(__file__).parent / "operations"
SOURCE_URL_PLACEHOLDER = "{{DEMO_SOURCE_URL}}"


def demo_specs(source_url: str) -> list[OperationSpec]:
    """Every demo operation, pointed at the demo source running at `source_url`."""
    specs: list[OperationSpec] = []
    for path in sorted(OPERATIONS.glob("*.yaml")):
        text = path.read_text(encoding="utf-8").replace(SOURCE_URL_PLACEHOLDER, source_url)
        specs.extend(load_text(text, source=str(path)))
    return specs


def launched_by_workflows(specs: list[OperationSpec]) -> set[str]:
    """The deployed configuration_ids of the demo workflows' targets: the demo does not launch them itself."""
    from runyard.operations.workflow.jobs import resolve_jobs

    return {
        resolve_jobs(spec.model_dump(mode="json")).target.configuration_id
        for spec in specs
        if spec.configuration_type == "workflow"
    }
