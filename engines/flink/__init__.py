"""A4f: the CTR query on Apache Flink SQL (Kafka -> Flink -> Kafka).

- ``job_config``: the job's settings and files (standard library: both sides read them).
- ``ctr_sql``: the query, as the SQL text of one statement set.
- ``ctr_job``: the PyFlink job process (runs in ``.venv/flink``; one run or a session).
- ``pipeline``: the ``PipelineDriver`` the runner uses (``engines.common.jvm_driver``).
- ``metrics``: samples the engine's REST API from outside the job.
- ``checkpoints``, ``outputs``, ``warmup_input``: the driver's checkpoint triggers, what it
  reads back after a run, the warm-up runs' synthetic input.
"""
