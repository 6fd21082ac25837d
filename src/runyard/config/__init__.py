"""Operation specs: pydantic models, YAML loading with file/line/field errors."""
