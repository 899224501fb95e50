"""Where generated batches go: a Kafka topic (confluent-kafka producer) or nowhere.

A sink takes a batch with ``offer(batch, insertion_ms) -> accepted``; it may accept fewer
events than offered when it pushes back (Kafka: the producer's local queue is full, i.e.
the broker does not keep up). The generator then waits with ``wait_for_space`` and offers
the rest with a fresh insertion time, and reports the blocked time as lateness.

Kafka producer settings (``workload.kafka_producer``) are tuned for throughput and were
chosen by measurement (scripts/bench_generator.py): one ``produce`` per message with no
per-message callback, one ``poll(0)`` per batch.

The client (confluent-kafka, not kafka-python) and ``compression: none`` were chosen by
measurement: docs/generator.md.

Exact truth needs to know that every message reached the broker: failures come back
through a producer-wide delivery callback that only fires on errors
(``delivery.report.only.error``), and ``close`` flushes and
raises ``DeliveryError`` when any message failed or stayed undelivered. Idempotence is on
so librdkafka's retries can neither duplicate nor reorder messages within a partition
(the watermark markers rely on the order).

Watermark markers (A3): ``{"watermark_ns": W, "producer": i}`` in every partition means
producer i sends no event with event_time_ns < W after it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, Protocol

from sdsbench.config import ConfigError
from sdsbench.workload.events import Batch

# Defaults of workload.kafka_producer (config/config.yaml carries the same values).
DEFAULT_KAFKA_PRODUCER: dict[str, Any] = {
    "linger_ms": 5,
    "batch_bytes": 1_000_000,
    "compression": "none",
    "queue_max_messages": 200_000,
    "idempotence": True,
}
SINK_KINDS = ("kafka", "null")


class DeliveryError(RuntimeError):
    """Messages the broker did not acknowledge: the run's truth would be wrong."""

    def __init__(self, message: str, report: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.report = report or {}


class Sink(Protocol):
    kind: str

    def offer(self, batch: Batch, insertion_ms: int) -> int: ...

    def wait_for_space(self, timeout_s: float) -> None: ...

    def idle(self, timeout_s: float) -> None: ...

    def send_markers(self, watermark_ns: int) -> int: ...

    def close(self, timeout_s: float) -> dict[str, Any]: ...


def validate_sink(sink: Mapping[str, Any]) -> dict[str, Any]:
    """Check a sink dict (see the module doc of sdsbench.workload.generator)."""
    if not isinstance(sink, Mapping) or "kind" not in sink:
        raise ConfigError("sink key kind: missing")
    kind = sink["kind"]
    if kind not in SINK_KINDS:
        raise ConfigError(f"sink key kind: unknown sink {kind!r}; expected one of {SINK_KINDS}")
    out = dict(sink)
    if kind == "kafka":
        for key in ("bootstrap", "topic"):
            if not isinstance(sink.get(key), str) or not sink[key]:
                raise ConfigError(f"sink key {key}: missing or empty")
        out.setdefault("watermark_markers", False)
        out.setdefault("marker_interval_ms", 200)
        out.setdefault("watermark_bound_ms", 0)
        out.setdefault("idle_partitions", [])
        if out["watermark_markers"] and int(out["marker_interval_ms"]) <= 0:
            raise ConfigError("sink key marker_interval_ms: must be > 0")
        if int(out["watermark_bound_ms"]) < 0:
            raise ConfigError("sink key watermark_bound_ms: must be >= 0")
        if not all(isinstance(p, int) for p in out["idle_partitions"]):
            raise ConfigError("sink key idle_partitions: expected a list of partition numbers")
    return out


def check_kafka_topic(sink: Mapping[str, Any], timeout_s: float = 15.0) -> list[int]:
    """The topic's partitions; ConfigError when the topic (or an idle partition) does not
    exist, so a bad sink fails before any producer process starts."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": sink["bootstrap"]})
    try:
        meta = admin.list_topics(sink["topic"], timeout=timeout_s).topics.get(sink["topic"])
    except KafkaException as exc:
        raise ConfigError(
            f"sink key bootstrap: broker {sink['bootstrap']} unreachable: {exc}"
        ) from exc
    if meta is None or meta.error is not None or not meta.partitions:
        raise ConfigError(f"sink key topic: topic {sink['topic']!r} does not exist")
    partitions = sorted(meta.partitions)
    unknown = set(sink.get("idle_partitions") or []) - set(partitions)
    if unknown:
        raise ConfigError(f"sink key idle_partitions: no such partitions {sorted(unknown)}")
    if not set(partitions) - set(sink.get("idle_partitions") or []):
        raise ConfigError("sink key idle_partitions: every partition is idle")
    return partitions


def producer_settings(workload: Mapping[str, Any]) -> dict[str, Any]:
    """workload.kafka_producer with defaults for keys a config does not set."""
    settings = dict(DEFAULT_KAFKA_PRODUCER)
    settings.update(workload.get("kafka_producer") or {})
    if settings["compression"] not in ("none", "lz4", "zstd", "snappy", "gzip"):
        raise ConfigError(
            f"config key workload.kafka_producer.compression: unknown {settings['compression']!r}"
        )
    return settings


def librdkafka_config(bootstrap: str, settings: Mapping[str, Any], client_id: str) -> dict:
    """The confluent-kafka producer configuration for ``settings``."""
    return {
        "bootstrap.servers": bootstrap,
        "client.id": client_id,
        "linger.ms": int(settings["linger_ms"]),
        "batch.size": int(settings["batch_bytes"]),
        "batch.num.messages": 100_000,  # let batch.size, not the message count, bound a batch
        "compression.type": settings["compression"],
        "queue.buffering.max.messages": int(settings["queue_max_messages"]),
        "queue.buffering.max.kbytes": 1_048_576,
        "enable.idempotence": bool(settings["idempotence"]),
        "acks": "all",
        "message.timeout.ms": 120_000,
        "delivery.report.only.error": True,
    }


class NullSink:
    """Accepts everything, sends nothing (measures the generator's own ceiling)."""

    kind = "null"

    def __init__(self, encode: bool = True) -> None:
        self.encode = encode  # encode the JSON anyway, so the cost is comparable
        self.messages = 0
        self.bytes = 0

    def offer(self, batch: Batch, insertion_ms: int) -> int:
        if self.encode:
            lines = batch.json_lines(insertion_ms)
            self.bytes += sum(map(len, lines))
        self.messages += len(batch)
        return len(batch)

    def wait_for_space(self, timeout_s: float) -> None:
        time.sleep(timeout_s)

    def idle(self, timeout_s: float) -> None:
        time.sleep(timeout_s)

    def send_markers(self, watermark_ns: int) -> int:
        return 0

    def close(self, timeout_s: float) -> dict[str, Any]:
        return {"kind": self.kind, "messages": self.messages, "bytes": self.bytes}


class KafkaSink:
    """Produces JSON events (no key) to one topic; markers go to every partition."""

    kind = "kafka"

    def __init__(
        self, sink: Mapping[str, Any], settings: Mapping[str, Any], process_index: int = 0
    ) -> None:
        from confluent_kafka import Producer

        self.topic: str = sink["topic"]
        self.process_index = process_index
        self.settings = dict(settings)
        self.failed = 0
        self.first_error: str | None = None
        self.client_errors: list[str] = []
        conf = librdkafka_config(sink["bootstrap"], settings, f"sdsbench-gen-{process_index}")
        conf["on_delivery"] = self._on_delivery_error
        conf["error_cb"] = self._on_client_error
        self._producer = Producer(conf)
        meta = self._producer.list_topics(self.topic, timeout=15)
        topic_meta = meta.topics.get(self.topic)
        if topic_meta is None or topic_meta.error is not None or not topic_meta.partitions:
            raise ConfigError(f"sink key topic: topic {self.topic!r} does not exist")
        self.partitions: list[int] = sorted(topic_meta.partitions)
        idle = set(sink.get("idle_partitions") or [])
        unknown = idle - set(self.partitions)
        if unknown:
            raise ConfigError(f"sink key idle_partitions: no such partitions {sorted(unknown)}")
        self.active_partitions = [p for p in self.partitions if p not in idle]
        if not self.active_partitions:
            raise ConfigError("sink key idle_partitions: every partition is idle")
        # With idle partitions the generator picks partitions itself (round robin per
        # batch over the active ones); otherwise librdkafka's sticky partitioner does.
        self._explicit_partition = bool(idle)
        self._next_partition = process_index % len(self.active_partitions)
        self.messages = 0
        self.bytes = 0
        self.markers = 0

    def _on_delivery_error(self, err: Any, msg: Any) -> None:
        # Called only for failed messages (delivery.report.only.error).
        if err is not None:
            self.failed += 1
            if self.first_error is None:
                self.first_error = str(err)

    def _on_client_error(self, err: Any) -> None:
        if len(self.client_errors) < 20:
            self.client_errors.append(str(err))

    def offer(self, batch: Batch, insertion_ms: int) -> int:
        lines = batch.json_lines(insertion_ms)
        produce = self._producer.produce
        topic = self.topic
        accepted = 0
        try:
            if self._explicit_partition:
                partition = self.active_partitions[self._next_partition]
                self._next_partition = (self._next_partition + 1) % len(self.active_partitions)
                for value in lines:
                    produce(topic, value, partition=partition)
                    accepted += 1
            else:
                for value in lines:
                    produce(topic, value)
                    accepted += 1
        except BufferError:
            pass  # local queue full: the caller waits and offers the rest
        self._producer.poll(0)
        self.messages += accepted
        self.bytes += sum(map(len, lines if accepted == len(lines) else lines[:accepted]))
        return accepted

    def wait_for_space(self, timeout_s: float) -> None:
        # Only errors produce delivery events, so poll sleeps the whole timeout while
        # librdkafka's own threads drain the queue.
        self._producer.poll(timeout_s)

    def idle(self, timeout_s: float) -> None:
        self._producer.poll(timeout_s)

    def send_markers(self, watermark_ns: int) -> int:
        """One marker per partition; returns ns spent blocked on a full queue."""
        value = json.dumps(
            {"watermark_ns": int(watermark_ns), "producer": self.process_index},
            separators=(",", ":"),
        ).encode()
        blocked_ns = 0
        for partition in self.partitions:
            while True:
                try:
                    self._producer.produce(self.topic, value, partition=partition)
                    break
                except BufferError:
                    t = time.monotonic_ns()
                    self._producer.poll(0.005)
                    blocked_ns += time.monotonic_ns() - t
        self.markers += len(self.partitions)
        return blocked_ns

    def close(self, timeout_s: float) -> dict[str, Any]:
        """Flush; raise DeliveryError unless every message was acknowledged."""
        remaining = self._producer.flush(timeout_s)
        report = {
            "kind": self.kind,
            "topic": self.topic,
            "messages": self.messages,
            "markers": self.markers,
            "bytes": self.bytes,
            "partitions": self.partitions,
            "delivery_failures": self.failed,
            "undelivered": remaining,
            "first_error": self.first_error,
            "client_errors": self.client_errors,
            "producer": self.settings,
        }
        if self.failed or remaining:
            raise DeliveryError(
                f"{self.failed} messages failed and {remaining} stayed undelivered after "
                f"{timeout_s} s (first error: {self.first_error}); the truth would be wrong",
                report,
            )
        return report


def make_sink(sink: Mapping[str, Any], workload: Mapping[str, Any], process_index: int = 0) -> Sink:
    sink = validate_sink(sink)
    if sink["kind"] == "null":
        return NullSink(encode=bool(sink.get("encode", True)))
    return KafkaSink(sink, producer_settings(workload), process_index)
