"""Package service: checks and records the package of each delivery; cancels it on request."""
