"""Payment-file benchmark: ``python -m benchmarks.payments`` (part of ``make bench``).

For a CSV file (client ACME001, layout CSV-v1) and a NACHA file (client INITECH03) of N
transactions each (default N = 100 000, then 1 000 000), generated deterministically into a
temporary directory, every transaction valid at the pipeline's clock ``PAYMENT_FILES_CLOCK`` =
``devstack.clock.PAYMENT_CLOCK`` (so the whole file goes through), this measures side by side:

* **ceiling** (CSV): plain ``csv.reader`` over the same file, every row read;
* **peer** (NACHA): ``achkit.validate`` (achkit 0.2.0) on the same file, read as text as its
  API requires;
* **each stage alone**, in process, through the very use cases the functions call
  (:class:`file_pipeline.service.PaymentFilePipeline`: ``validate`` = FileValidator,
  ``adaptor`` = FileAdaptor, ``creator`` = FileCreator, the last two fed their real Service
  Bus hand-off through :func:`choreography.handling.consume`), on ports backed by the local
  disk (:class:`LocalBlobStore`), so storage costs no network: each stage reads the previous
  one's work file from disk, the FileCreator's time includes the pain.001 rendering *and* its
  XSD validation;
* **the whole pipeline** on the local stack (:class:`devstack.stack.Stack`: Azurite, Service
  Bus and Event Grid emulators, devhost running ``function_app.py``), seeded like ``make
  seed``. A warm-up file of :data:`WARMUP_N` transactions goes through first, so the measured
  file meets a host as it is after its first file (Service Bus links open, reference data
  loaded; a new sender link alone costs the SDK about 0.45 s); the warm-up's own time is
  reported. Then the file is uploaded to ``payment-files-in/{clientId}/{name}`` and
  ``GET /api/payment-files/{clientId}/{name}`` is polled until ``Completed`` or ``Rejected``.
  Seconds run from the end of the upload (the blob exists; devhost's blob trigger lists the
  container every 0.25 s by default) to the ``updatedAt`` the record carries in its final state:
  the instant FileCreator saved ``Completed``, after committing the output. Where the time went
  is taken from devhost's log (each step's invocation) and the record's ``receivedAt`` (the
  trigger's latency); the upload time is reported apart. The pain.001 in ``payment-files-out``
  is then downloaded and checked against the official XSD
  (:func:`file_pipeline.formats.xsd.load_schema`) with its ``CdtTrfTxInf`` counted: it must hold
  N transactions. This runs ``--pipeline-runs`` times (3), each on a fresh stack; the median run
  is reported and every run's seconds are kept.

Every measurement runs in a process of its own, from a copy of the checkout taken at the start
(``--no-snapshot`` runs the checkout itself), so edits made meanwhile cannot mix two versions of
the code in one run; a digest of the code measured is recorded. Peak RSS is the measuring
process's ``VmHWM`` (for the whole pipeline: devhost's, the process that runs the functions).
``ru_maxrss`` is kept in the JSON but not used: Linux carries the parent's high-water mark
across fork + exec into it, so a small child shows its parent's peak. RSS growth is the peak
less the process's RSS once it had imported everything and loaded the reference data and the
XSD (for the pipeline: devhost's RSS once started), so the interpreter-and-libraries baseline
shows on its own. MB are 10^6 bytes throughout.

Before each measurement the files written so far are flushed to disk (``os.sync``), so that
their write-back does not slow the next one. The machine may be shared: before each
measurement the benchmark waits (``--quiet-wait``, up to 15 s, 180 s in a whole run) for other
processes' load to end; the CPU they used meanwhile is recorded, a measurement it may have
slowed is marked, and a file whose measurements were disturbed is measured again
(``--repeat-if-loaded``, once), the less disturbed attempt being reported and every attempt's
seconds kept in the JSON. A measurement that fails (a file rejected, a step dead-lettered, a
time-out, an output that is not XSD-valid or not N transactions) is reported as failed with its
error and the stack's log lines about it, and the run exits 1.

The targets of issue 4 are judged in the ``target`` column, met or not met, never hidden:

1. CSV -> XSD-valid pain.001 at >= 50 000 transactions/s end to end (the whole pipeline);
2. peak memory < 200 MB at 1M transactions (our code's processes, streaming);
3. NACHA validation >= 3x achkit's transactions/s at <= 1/10 of its peak RSS. Judged on
   "validation only (as achkit)" (every rule, nothing written: what achkit does) and, shown
   beside it, on "FileValidator alone" (which also writes the claim-checked work file and the
   file record).

Amounts are kept small (EUR 1.00-15.99, USD 1.00-159.99) because the reference data's
per-file limits (ACME001: EUR 10 000 000; INITECH03: USD 100 000 000) must hold for a
million transactions; a size whose file would exceed them is refused before anything runs.

Results: ``benchmarks/results/payments.json`` and ``.md`` (rewritten after every measurement,
so an interrupted run keeps what it measured).

Modules: :mod:`.runner` (the command line, the snapshot, each measurement in a child process),
:mod:`.inputs` (the generated files), :mod:`.stages` (the ceiling, the peer, each stage alone on
:mod:`.local_ports`), :mod:`.pipeline` (the whole pipeline on the local stack), :mod:`.report`
(rows, targets, JSON and Markdown), :mod:`.memory` (figures from /proc), :mod:`.common`.
"""
