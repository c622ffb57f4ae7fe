"""File formats: detection, streaming readers and writers.

* :mod:`.detect` - CSV / pain.001.001.03 / .09 / NACHA from the first bytes
* :mod:`.csv_reader`, :mod:`.pain001_reader`, :mod:`.nacha`, :mod:`.readers` - streaming readers
* :mod:`.pain001_writer` - pain.001.001.09 (spool per group, then assemble)
* :mod:`.pain002_writer` - pain.002.001.10 status report
* :mod:`.xsd` - official XSDs from ``sepaxml`` and streaming XSD validation
* :mod:`.safe_csv` - formula-safe CSV output (error reports)

Synthetic files for tests, benchmarks and the soak are in ``devstack/samples.py`` (not deployed).
"""
