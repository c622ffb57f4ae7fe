"""The payment-file pipeline's steps, one module each, on the ports in ``shared.Workbench``:

=================  ================================================================================
``validate.py``    FileValidator: an uploaded blob version -> ``PaymentFileValidated``, or rejected
``adapt.py``       FileAdaptor: validated transactions -> canonical instructions
``create.py``      FileCreator: instructions -> pain.001.001.09 + pain.002, ``PaymentFileCreated``
``compensate.py``  compensation: undo the steps that succeeded, reject, ``PaymentFileRejected``
``status.py``      the status query behind ``GET /api/payment-files/{clientId}/{fileName}``
``consumers.py``   FileAdaptor's and FileCreator's side of their queues: a transient failure is
                   tried again later, the last one compensates
``shared.py``      what the steps share: records, work files, reports, hand-offs, announcements
=================  ================================================================================

The triggers are in ``file_pipeline/handlers.py``; :class:`file_pipeline.service.PaymentFilePipeline`
composes the steps on one set of ports.
"""
