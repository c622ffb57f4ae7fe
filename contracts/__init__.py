"""The vocabulary between services: every message one service sends and another reads.

A service imports the contracts it sends and reads from here, never another service's modules,
so the only thing two services share is what they say to each other. Messages a service
sends only to itself (a timer on its own session, a retry scheduled for later) stay in that
service's ``messages.py``. Each contract is versioned (``TYPE``, ``SCHEMA_VERSION``; see
:mod:`choreography.contracts`).

* :mod:`contracts.deliveries` - drone delivery: Ingestion, Package, Drone Scheduler, Delivery.
* :mod:`contracts.payment_files` - payment files: FileValidator, FileAdaptor, FileCreator hand
  each file on, and what they announce on Event Grid.
"""
