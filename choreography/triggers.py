"""Trigger objects from the Functions host, turned into the neutral :class:`~.messaging.Incoming`."""

from __future__ import annotations

import azure.functions as func

from .entities import Destination, Subscription
from .messaging import Incoming


def incoming(message: func.ServiceBusMessage, source: Subscription | Destination) -> Incoming:
    path = source.path if isinstance(source, Subscription) else source.name
    return Incoming(
        body=message.get_body(),
        message_id=message.message_id or "",
        source=path,
        subject=message.subject or message.label,
        session_id=message.session_id,
        correlation_id=message.correlation_id,
        content_type=message.content_type,
        application_properties=dict(message.application_properties or {}),
        delivery_count=message.delivery_count or 1,
    )
