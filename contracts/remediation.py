"""What remediation announces: a dead letter that needs a person (CloudEvents 1.0 on the Event
Grid topic of the workload it belongs to, ``deliveries`` or ``payments``)."""

from __future__ import annotations

MESSAGE_PARKED = "MessageParked"
