"""Exact end offsets for table recovery, whatever the broker reports.

Faust restores a table by reading its changelog up to each partition's reported
end offset (the high watermark). The embedded broker (Tansu 0.6, memory storage)
reports the base offset of a partition's last record batch plus one instead of its
last offset plus one (a batch of 10 records at offsets 0-9 reports 1), so a
restored table would silently miss all but the first record of the last changelog
batch. :func:`exact_end_offsets` reads forward from the reported offset to the
real end; on a broker that reports correctly it reads one record per partition.
The worker's consumer (:class:`stream.runtime.transport.Consumer`) uses it when the
broker is the embedded one.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping

from confluent_kafka import Consumer, TopicPartition

log = logging.getLogger(__name__)


def exact_end_offsets(config: Mapping[str, str], reported: Mapping, idle_s: float = 0.3, timeout_s: float = 15.0):
    """``reported`` {tp: end offset} corrected by reading each partition to its end.

    ``tp`` is anything with ``topic`` and ``partition`` attributes.
    """
    todo = {tp: end for tp, end in reported.items() if end and end > 0}
    if not todo:
        return dict(reported)
    consumer = Consumer(
        {
            **config,
            "group.id": f"churn-end-offsets-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
    )
    try:
        key = {(tp.topic, tp.partition): tp for tp in todo}
        ends = dict(reported)
        consumer.assign([TopicPartition(tp.topic, tp.partition, end - 1) for tp, end in todo.items()])
        deadline = time.monotonic() + timeout_s
        last_data = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last_data < idle_s:
            for msg in consumer.consume(10_000, 0.1):
                if msg.error():
                    continue
                tp = key[(msg.topic(), msg.partition())]
                ends[tp] = max(ends[tp], msg.offset() + 1)
                last_data = time.monotonic()
        fixed = {tp: (reported[tp], ends[tp]) for tp in todo if ends[tp] != reported[tp]}
        if fixed:
            log.info(
                "corrected end offsets reported by the broker: %s",
                {f"{tp.topic}[{tp.partition}]": v for tp, v in fixed.items()},
            )
        return ends
    finally:
        consumer.close()
