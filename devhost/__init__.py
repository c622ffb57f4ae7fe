"""devhost: a local Azure Functions host for the Python v2 programming model.

Runs ``function_app.py`` from its own decorators (HTTP, Service Bus, Event Grid and blob
triggers; Event Grid, Service Bus and Storage queue outputs) against whatever the app
settings point at: the local emulators or Azure. ``python -m devhost --help`` for usage;
each module's docstring states its contract. Never deployed (requirements-dev only).
"""
