"""Shared core of the drone delivery choreography: no business rules live here.

Envelope and contracts (:mod:`.contracts`), the one publisher (:mod:`.publishing`), error
classification and the application-level dead-letter route (:mod:`.handling`), reason codes
(:mod:`.reason_codes`), settings (:mod:`.settings`), deterministic ids (:mod:`.idempotency`),
W3C trace context (:mod:`.tracing`) and the process-wide adapters (:mod:`.runtime`).
"""
