"""Local Azure Event Grid (custom topics) emulator.

Run it with ``python -m emulators.eventgrid``; see ``README.md`` in this folder for the
configuration shape, endpoints and the Azure behaviour that is (and is not) emulated.
The real ``azure-eventgrid`` SDK publishes to it unchanged.
"""
