"""A4f: the CTR query on Apache Flink SQL (Kafka -> Flink -> Kafka).

``ctr_job`` is the PyFlink job (runs in ``.venv/flink``), ``pipeline`` the runner's driver
(runs in the main venv and starts the job as a subprocess), ``metrics`` samples the
engine's REST API from outside the job.
"""
