"""Use cases over the store: load, decide with the domain rules, write in one transaction."""
