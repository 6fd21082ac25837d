"""The pure core of runyard: statuses, transitions, task graphs and rules. No I/O here."""
