"""The run service and what it runs: plans of items, events, and folders a run fills."""
