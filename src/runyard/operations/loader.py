"""Read operation configurations from YAML or JSON files, and say where a mistake is: file, line, field.

Each document is validated by its type's model (runyard.operations.registry), then by the type's
deploy-time checks (dependencies, executors, cycles), so that every mistake names its line.

`environment`, when given (`runyard deploy --env DEV`), replaces every document's own before validation: the
configurations are deployed to that environment, and a table-to-table configuration_id takes its `_<ENV>` suffix
from it (OperationType.deployed_id).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from runyard.errors import ConfigError
from runyard.operations import registry
from runyard.operations.definition import DeployCheck
from runyard.operations.spec import ENVIRONMENT, OperationBase

OperationSpec = OperationBase
CONFIGURATION_FILES = ("*.yaml", "*.yml", "*.json")  # JSON is read as YAML, of which it is (nearly) a subset

Location = tuple[str | int, ...]


def spec_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(file for pattern in CONFIGURATION_FILES for file in path.glob(pattern))
        if not files:
            raise ConfigError("no .yaml, .yml or .json files in this folder", source=str(path))
        return files
    if not path.exists():
        raise ConfigError("no such file or folder", source=str(path))
    return [path]


def load_specs(path: Path, environment: str | None = None) -> list[OperationSpec]:
    """Every operation in a file (one YAML document each) or in the YAML files of a folder."""
    return [spec for _, spec in load_specs_with_sources(path, environment)]


def load_specs_with_sources(path: Path, environment: str | None = None) -> list[tuple[str, OperationSpec]]:
    """Like load_specs, with the file each operation came from (for messages at deploy time)."""
    return [(str(file), spec) for file in spec_files(path) for spec in load_file(file, environment)]


def load_file(path: Path, environment: str | None = None) -> list[OperationSpec]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read it: {error}", source=str(path)) from error
    return load_text(text, source=str(path), environment=environment)


def check_environment(environment: str) -> str:
    """An environment name given on its own (`--env`), checked as a configuration's `environment` is."""
    if not re.fullmatch(ENVIRONMENT, environment):
        raise ConfigError(
            f"{environment[:60]!r} is not an environment name: capital letters, digits and '_', "
            "starting with a letter (DEV, PROD, ...)",
            field="environment",
        )
    return environment


def load_text(text: str, source: str = "<string>", environment: str | None = None) -> list[OperationSpec]:
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as error:
        line = error.problem_mark.line + 1 if getattr(error, "problem_mark", None) else None  # type: ignore[attr-defined]
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"not valid YAML: {problem}", source=source, line=line) from error
    if environment is not None:
        check_environment(environment)
    specs = [parse_document(node, source, environment) for node in nodes if node is not None]
    if not specs:
        raise ConfigError("the file holds no operation", source=source)
    return specs


def parse_document(node: yaml.Node, source: str, environment: str | None = None) -> OperationSpec:
    data = _construct(node)
    lines = dict(_locations(node, ()))
    start = node.start_mark.line + 1
    if not isinstance(data, dict):
        raise ConfigError("an operation must be a mapping of fields", source=source, line=start)
    if environment is not None:
        data["environment"] = environment  # its line, if the document names one, still locates a mistake
    kind = data.get("configuration_type")
    definition = registry.operation_types().get(kind) if isinstance(kind, str) else None
    if definition is None:
        allowed = ", ".join(registry.configuration_types())
        raise ConfigError(
            f"unknown configuration type {kind!r}; allowed: {allowed}",
            source=source,
            line=lines.get(("configuration_type",), start),
            field="configuration_type",
        )
    try:
        spec = definition.spec.model_validate(data, context={"source": source})
    except ValidationError as error:
        raise _config_error(error, data, lines, source, start) from None
    try:
        definition.check(spec, DeployCheck(executors=registry.executor_names()))
    except ConfigError as error:
        raise locate(error, data, lines, source, start) from None
    return spec


def locate(error: ConfigError, data: Any, lines: dict[Location, int], source: str, start: int) -> ConfigError:
    """A deploy-time check's error (its field a dotted path) with the file and the line of that field."""
    loc: Location = tuple(int(part) if part.isdigit() else part for part in (error.field or "").split(".") if part)
    return ConfigError(error.reason, source=source, line=_line(loc, lines, start), field=error.field)


def _line(loc: Location, lines: dict[Location, int], start: int) -> int:
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return lines[loc[:cut]]
    return start


def _construct(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _locations(node: yaml.Node, path: Location) -> Iterator[tuple[Location, int]]:
    yield path, node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                yield (*path, key.value), key.start_mark.line + 1
                yield from _locations(value, (*path, key.value))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _locations(item, (*path, index))


def _config_error(
    error: ValidationError, data: Any, lines: dict[Location, int], source: str, start: int
) -> ConfigError:
    first = error.errors()[0]
    loc = _data_path(data, tuple(first["loc"]))
    line = _line(loc, lines, start)
    field = ".".join(str(part) for part in loc) or None
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        message = "is required but missing"
    elif first["type"] == "extra_forbidden":
        message = "is not a known field (check its spelling)"
    more = len(error.errors()) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError(message, source=source, line=line, field=field)


def _data_path(data: Any, loc: Location) -> Location:
    """pydantic's loc with the union-member tags it inserts (e.g. 'cursor') removed, so it matches the YAML."""
    path: list[str | int] = []
    current = data
    for index, part in enumerate(loc):
        found, child = _child(current, part)
        if found:
            current = child
        elif index < len(loc) - 1:
            continue  # a tag pydantic added, not a key of the document
        path.append(part)
    return tuple(path)


def _child(node: Any, part: str | int) -> tuple[bool, Any]:
    if isinstance(node, dict) and part in node:
        return True, node[part]
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return True, node[part]
    return False, None
