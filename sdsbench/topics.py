"""Per-run Kafka topics: input (events), output (results, broker append time), dead letters."""

from __future__ import annotations

from typing import Any

from sdsbench import contract

# The output topic stamps each record with the broker's clock on append, so the
# "result visible" time is measured identically for A3, Spark and Flink.
OUTPUT_TOPIC_CONFIG = {"message.timestamp.type": "LogAppendTime"}


def create_run_topics(services: Any, run_id: str, partitions: int) -> dict[str, str]:
    """Create the run's input, output and dead-letter topics; return their names."""
    from sdsbench.services.kafka import create_topic

    names = {
        "input": contract.input_topic(run_id),
        "output": contract.output_topic(run_id),
        "dead_letter": contract.dead_letter_topic(run_id),
    }
    create_topic(services.kafka_bootstrap, names["input"], partitions)
    create_topic(services.kafka_bootstrap, names["output"], 1, config=OUTPUT_TOPIC_CONFIG)
    create_topic(services.kafka_bootstrap, names["dead_letter"], 1)
    return names


def delete_run_topics(services: Any, run_id: str) -> None:
    from sdsbench.services.kafka import delete_topics

    names = [
        contract.input_topic(run_id),
        contract.output_topic(run_id),
        contract.dead_letter_topic(run_id),
    ]
    delete_topics(services.kafka_bootstrap, names)
