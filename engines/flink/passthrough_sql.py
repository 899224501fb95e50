"""Flink's pass-through query (issue 14; ``engines.flink.passthrough`` runs it): read the
input topic to its end offsets at the start, as text (``raw``) or parsed with the CTR
query's JSON schema (``parse``), and count the records, with the first and last processing
time seen, as one row per update of a global aggregate (mini-batched: a few updates)."""

from __future__ import annotations

from engines.flink.ctr_sql import column_list, epoch_ms, literal, quote
from sdsbench import contract

# The aggregate emits at most one update per mini-batch instead of one per record.
SETTINGS = {"table.exec.mini-batch.enabled": "true",
            "table.exec.mini-batch.allow-latency": "1 s",
            "table.exec.mini-batch.size": "100000"}


def source_ddl(bootstrap: str, topic: str, group_id: str, mode: str) -> str:
    columns = "`line` STRING" if mode == "raw" else column_list(contract.EVENT_SCHEMA)
    options = [
        "'connector' = 'kafka'", f"'topic' = {literal(topic)}",
        f"'properties.bootstrap.servers' = {literal(bootstrap)}",
        f"'properties.group.id' = {literal(group_id)}",
        "'scan.startup.mode' = 'earliest-offset'", "'scan.bounded.mode' = 'latest-offset'",
    ]
    options += (["'format' = 'raw'"] if mode == "raw" else
                ["'format' = 'json'", "'json.ignore-parse-errors' = 'true'"])
    return f"CREATE TEMPORARY TABLE `src` (\n  {columns}\n) WITH (\n  " + ",\n  ".join(
        options) + "\n)"


def count_query(mode: str) -> str:
    """Counted records (``parse``: events whose every field parsed, so every field is
    read) and the first and last processing time (epoch ms) a record was seen."""
    where = "" if mode == "raw" else "\nWHERE " + " AND ".join(
        f"{quote(name)} IS NOT NULL" for name, _ in contract.EVENT_SCHEMA)
    return (f"SELECT COUNT(*) AS counted, MIN(t) AS first_ms, MAX(t) AS last_ms FROM (\n"
            f"  SELECT {epoch_ms('CURRENT_TIMESTAMP')} AS t FROM `src`{where}\n)")
