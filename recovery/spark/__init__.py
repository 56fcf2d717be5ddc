"""Apache Spark as the runner of a recovery's tasks: the session, offset chunks and frames as task payloads.

This subpackage knows no recovery logic: it plans offset chunks of partitions, opens a Spark session with
actionable errors, moves polars frames through Spark as Arrow IPC payloads, and runs task functions over
chunks (``mapInArrow``) and over groups (``applyInArrow``). What the tasks do is
:mod:`recovery.pipeline.on_spark`'s. pyspark is optional (``pip install 'recovery[spark]'``): it is imported
only when a session is opened.
"""
