"""The statements of the write side, grouped by what they touch; :class:`jobsvc.storage.unit.Unit`
hands them to a transaction, and the read-only ones also run on the reader (``Repository``).

Each group is written against ``Conn``: anything with ``fetchone``, ``fetchall``, ``execute`` and
``insert``, which is both a backend's write transaction and, for the reads, the backend itself.
"""
