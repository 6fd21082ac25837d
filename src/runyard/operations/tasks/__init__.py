"""The `tasks` type: a task graph written out by hand (demos, smoke checks, tests)."""
