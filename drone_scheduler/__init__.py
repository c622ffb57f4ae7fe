"""Drone Scheduler: assigns a free drone able to carry the package; releases it when asked."""
