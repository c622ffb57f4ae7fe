"""``make conformance``: Microsoft's own azure-servicebus live tests against this emulator."""
