"""Real services the pipelines run against: a private PostgreSQL cluster and an Apache Kafka broker.

`stack.start_services` / `stack.stop_services` start and stop both from the experiment
config's ``services:`` section and record the endpoints in ``<state_dir>/services.json``.
"""

from __future__ import annotations


class ServiceError(RuntimeError):
    """A service could not be started, stopped or reached; the message names the fix."""


__all__ = ["ServiceError"]
