"""Ingestion: the HTTP front door. Accepts delivery requests and publishes ``DeliveryRequested``."""
