"""The `workflow` type: launches a target job once each of its upstream jobs has succeeded (spec 003)."""
