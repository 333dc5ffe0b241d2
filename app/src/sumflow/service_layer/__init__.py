"""Use cases: orchestrate the domain rules over the adapters."""
