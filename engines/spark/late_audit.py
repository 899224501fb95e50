"""Which input events did Spark's watermark drop? Replayed from the checkpoint.

Spark reports ``numRowsDroppedByWatermark`` per batch, but for an aggregation those rows
are the state operator's input: one partially aggregated row per late (window, campaign)
group, not one per event. To compare the output with the generator's truth exactly, the
audit replays Spark's own decisions:

- the checkpoint's ``offsets/<N>`` files give every batch's end offsets per partition
  (batch N reads [end of N-1, end of N); batch 0 starts at ``sources/0/0``) and the
  watermark of batch N (``batchWatermarkMs``);
- a streaming aggregation drops an input row of batch N when its window's end is at or
  below the watermark *of batch N-1* (Spark filters late rows with the previous batch's
  watermark and evicts state with the current one; batch 0 drops nothing). Checked
  against Spark's own count: the distinct late (window, campaign) groups of each batch
  this rule finds equal ``numRowsDroppedByWatermark`` of that batch
  (``matches_reported`` in the summary, per batch in ``spark_batches.csv``). In real-time
  mode no partial aggregation runs ahead of the state operator, and Spark counts every
  late input row: there the dropped events are compared (``reported_unit``);
- the input topic is read again and each valid event (``contract.validate_event`` with
  the record's Kafka timestamp as "now", as in the job) is assigned to its batch.

Outputs: ``metrics/spark_batches.csv`` (per batch: offsets, watermarks, input records,
dropped events and groups, Spark's reported drops) and ``metrics/late.csv`` (per campaign
and window: dropped views, clicks, purchases; the columns the analysis reads for every
pipeline).
"""

from __future__ import annotations

import bisect
import csv
import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdsbench import contract

BATCH_COLUMNS = ("batch_id", "batch_time_ms", "watermark_ms", "late_watermark_ms", "committed",
                 "start_offsets", "end_offsets", "input_records", "dropped_events",
                 "dropped_groups", "rows_dropped_reported")
LATE_COLUMNS = ("campaign_id", "window_start_ms", "views_dropped", "clicks_dropped",
                "purchases_dropped")


@dataclass(frozen=True)
class BatchOffsets:
    batch_id: int
    batch_time_ms: int
    watermark_ms: int  # batchWatermarkMs: the watermark batch N evicts state with
    start: dict[int, int]
    end: dict[int, int]
    committed: bool


def _json_lines(path: Path) -> list[Any]:
    """The JSON lines of a checkpoint log file (after its version line)."""
    out = []
    for line in path.read_text(errors="replace").splitlines()[1:]:
        line = line.strip()
        out.append(json.loads(line) if line and line != "-" else None)
    return out


def _offsets(source_offset: dict[str, dict[str, int]]) -> dict[int, int]:
    return {int(p): int(o) for per_topic in source_offset.values() for p, o in per_topic.items()}


def read_batches(checkpoint: Path) -> list[BatchOffsets]:
    """Every planned batch of a single-source query's checkpoint, in order."""
    ids = sorted(int(p.name) for p in (checkpoint / "offsets").iterdir() if p.name.isdigit())
    initial_file = checkpoint / "sources" / "0" / "0"
    previous_end = _offsets(_json_lines(initial_file)[0]) if initial_file.exists() else {}
    batches = []
    for batch_id in ids:
        metadata, source = _json_lines(checkpoint / "offsets" / str(batch_id))[:2]
        end = _offsets(source)
        batches.append(BatchOffsets(
            batch_id=batch_id,
            batch_time_ms=int(metadata.get("batchTimestampMs", 0)),
            watermark_ms=int(metadata.get("batchWatermarkMs", 0)),
            start={p: previous_end.get(p, 0) for p in end},
            end=end,
            committed=(checkpoint / "commits" / str(batch_id)).exists(),
        ))
        previous_end = end
    return batches


def late_watermarks_ms(batches: list[BatchOffsets]) -> list[int]:
    """The watermark each batch filters late rows with: the previous batch's (see doc)."""
    return [0] + [b.watermark_ms for b in batches[:-1]] if batches else []


def reported_drops_by_batch(progress_csv: Path, query: str = "ctr") -> dict[int, int]:
    """Spark's numRowsDroppedByWatermark per batch (from metrics/spark_progress.csv)."""
    out: dict[int, int] = {}
    if not progress_csv.exists():
        return out
    with progress_csv.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["query"] == query and row["batch_id"]:
                out[int(row["batch_id"])] = int(row["rows_dropped_by_watermark"] or 0)
    return out


def spark_reported_drops(progress_csv: Path) -> int:
    return sum(reported_drops_by_batch(progress_csv).values())


def _batch_locator(batches: list[BatchOffsets]) -> dict[int, tuple[list[int], list[int]]]:
    """Per partition: sorted batch end offsets and the batch index each belongs to."""
    locator: dict[int, tuple[list[int], list[int]]] = {}
    for index, batch in enumerate(batches):
        for p, end in batch.end.items():
            if end > batch.start.get(p, 0):
                ends, indices = locator.setdefault(p, ([], []))
                ends.append(end)
                indices.append(index)
    return locator


def _read_partition(bootstrap: str, topic: str, partition: int, stop: int):  # -> Iterator
    """(offset, kafka timestamp ms, value) of ``partition`` for offsets below ``stop``."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "sdsbench-spark-audit",
                         "enable.auto.commit": False, "fetch.max.bytes": 16 * 2**20})
    try:
        consumer.assign([TopicPartition(topic, partition, 0)])
        position = 0
        idle_since = time.monotonic()
        while position < stop:
            # A short timeout: consume() waits for the whole count or the timeout.
            messages = consumer.consume(10_000, timeout=0.2)
            if not messages:
                if time.monotonic() - idle_since > 10:
                    raise RuntimeError(f"audit: {topic}[{partition}] ended at {position}, "
                                       f"the checkpoint says {stop}")
                continue
            idle_since = time.monotonic()
            for msg in messages:
                if msg.error():
                    raise RuntimeError(f"audit: {topic}[{partition}]: {msg.error()}")
                if msg.offset() >= stop:
                    return
                position = msg.offset() + 1
                yield msg.offset(), msg.timestamp()[1], msg.value()
    finally:
        consumer.close()


def none_reported_dropped(batches: list[BatchOffsets], reported: dict[int, int]) -> bool:
    """Spark reported, for every batch of the checkpoint, that its watermark dropped no row.

    Every late event's (window, campaign) group reaches the state operator as a row that
    Spark counts, so no row dropped means no event dropped: the replay would find none
    (its per-batch agreement with Spark's count is what every replay checks). A batch
    without a progress event (a killed job's) leaves the question to the replay."""
    return bool(batches) and all(reported.get(b.batch_id) == 0 for b in batches)


REPORTED_UNITS = ("groups", "events")  # what numRowsDroppedByWatermark counts (module doc)


def audit_late_events(
    checkpoint: Path, bootstrap: str, topic: str, catalog: contract.AdCatalog,
    metrics_dir: Path, reported_unit: str = "groups",
) -> dict[str, Any]:
    """Replay the batches of ``checkpoint`` over ``topic``; write the two CSVs; summarise.
    ``reported_unit``: what Spark's reported drops count, "groups" (micro-batches) or
    "events" (real-time mode).

    The replay reads the whole input again (~100k records/s). It is left out when Spark
    reported no dropped row in any batch (``none_reported_dropped``): the CSVs then hold
    the batches' offsets and no late event."""
    batches = read_batches(checkpoint)
    late_wm = late_watermarks_ms(batches)
    reported = reported_drops_by_batch(metrics_dir / "spark_progress.csv")
    replay = not none_reported_dropped(batches, reported)
    locator = _batch_locator(batches)
    final_end: dict[int, int] = batches[-1].end if batches and replay else {}
    expected = {b.batch_id: sum(b.end[p] - b.start.get(p, 0) for p in b.end) for b in batches}
    records = [0] * len(batches) if replay else [expected[b.batch_id] for b in batches]
    dropped: dict[tuple[int, int, int], dict[str, int]] = defaultdict(
        lambda: {"view": 0, "click": 0, "purchase": 0})
    for partition, stop in sorted(final_end.items()):
        ends, indices = locator.get(partition, ([], []))
        for offset, time_ms, value in _read_partition(bootstrap, topic, partition, stop):
            index = indices[bisect.bisect_right(ends, offset)]
            records[index] += 1
            event, _reason = contract.validate_event(value, catalog, time_ms)
            if event is None:
                continue
            start = contract.event_window_start_ms(event["event_time_ns"])
            if start + contract.WINDOW_MS <= late_wm[index]:
                key = (batches[index].batch_id, catalog.campaign_of_ad[event["ad_id"]], start)
                dropped[key][event["event_type"]] += 1
    events_by_batch: dict[int, int] = defaultdict(int)
    groups_by_batch: dict[int, int] = defaultdict(int)
    for (batch_id, _c, _w), counts in dropped.items():
        events_by_batch[batch_id] += sum(counts.values())
        groups_by_batch[batch_id] += 1
    batch_rows = [{
        "batch_id": b.batch_id, "batch_time_ms": b.batch_time_ms, "watermark_ms": b.watermark_ms,
        "late_watermark_ms": late_wm[i], "committed": b.committed,
        "start_offsets": json.dumps(b.start, sort_keys=True),
        "end_offsets": json.dumps(b.end, sort_keys=True), "input_records": records[i],
        "dropped_events": events_by_batch[b.batch_id],
        "dropped_groups": groups_by_batch[b.batch_id],
        "rows_dropped_reported": reported.get(b.batch_id),
    } for i, b in enumerate(batches)]
    per_window: dict[tuple[int, int], dict[str, int]] = defaultdict(
        lambda: {"view": 0, "click": 0, "purchase": 0})
    for (_b, campaign, start), counts in dropped.items():
        for event_type, n in counts.items():
            per_window[(campaign, start)][event_type] += n
    late_rows = [{"campaign_id": c, "window_start_ms": w, "views_dropped": n["view"],
                  "clicks_dropped": n["click"], "purchases_dropped": n["purchase"]}
                 for (c, w), n in sorted(per_window.items())]
    _write_csv(metrics_dir / "spark_batches.csv", BATCH_COLUMNS, batch_rows)
    _write_csv(metrics_dir / "late.csv", LATE_COLUMNS, late_rows)
    if reported_unit not in REPORTED_UNITS:
        raise ValueError(f"reported_unit {reported_unit!r}: one of {REPORTED_UNITS}")
    found = groups_by_batch if reported_unit == "groups" else events_by_batch
    mismatched = [b.batch_id for b in batches if reported.get(b.batch_id) is not None
                  and reported[b.batch_id] != found[b.batch_id]]
    return {
        "rule": "dropped iff window_end_ms <= watermark of the previous batch",
        "replayed": replay,
        "batches": len(batches),
        "records": sum(records),
        "records_replayed": sum(records) if replay else 0,
        # Without a replay the records are the offsets' and this is not a check.
        "records_match_offsets": records == [expected[b.batch_id] for b in batches]
        if replay else None,
        "dropped_events": sum(events_by_batch.values()),
        "dropped_views": sum(n["view"] for n in dropped.values()),
        "dropped_clicks": sum(n["click"] for n in dropped.values()),
        "dropped_purchases": sum(n["purchase"] for n in dropped.values()),
        "dropped_groups": sum(groups_by_batch.values()),
        "rows_dropped_reported": sum(reported.values()),
        "reported_unit": reported_unit,
        "matches_reported": not mismatched,
        "batches_not_matching_reported": mismatched,
    }


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
