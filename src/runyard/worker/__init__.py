"""Workers: claim tasks under leases, run them through executors, and the scheduler's sweep."""
