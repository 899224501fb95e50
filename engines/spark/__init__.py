"""A4s: the CTR query on Spark Structured Streaming (Kafka -> Spark -> Kafka).

- ``job_config``: the job's settings and files (standard library: both sides read them).
- ``ctr_query``: the query: ``build`` makes the CTR streaming DataFrame and its sink.
- ``ctr_job``: the PySpark job process (runs in ``.venv/spark``; one run or a session).
- ``progress``: a StreamingQueryListener in the job writing one row per micro-batch.
- ``late_audit``: after the run, recomputes which events Spark's watermark dropped from the
  checkpoint's batch offsets and watermarks (Spark only reports partially aggregated rows).
- ``pipeline``: the ``PipelineDriver`` the runner uses (``engines.common.jvm_driver``).
"""
