"""Notifications: an Event Grid subscriber downstream of the workflow (fan-out beyond the saga).

It records one notification per ``DeliveryShipped`` / ``DeliveryFailed`` event in Table
``notifications``, the kind of thing a customer-notification service would do.
"""
