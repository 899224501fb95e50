"""A4s: the CTR query on Spark Structured Streaming (Kafka -> Spark -> Kafka).

- ``ctr_job``: the PySpark job (runs in ``.venv/spark`` as its own process).
- ``progress``: a StreamingQueryListener in the job writing one row per micro-batch.
- ``late_audit``: after the run, recomputes which events Spark's watermark dropped from the
  checkpoint's batch offsets and watermarks (Spark only reports partially aggregated rows).
- ``pipeline``: the ``PipelineDriver`` the runner uses (start, drain, collect, stop).
"""
