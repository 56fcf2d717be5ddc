"""A team's Quix Streams app: per-device sessions (max temperature, reading count) and a moving average.

Input: sensor readings as nested JSON, event time in epoch seconds, the Kafka key is ``site|id``::

    {"device": {"id": "d-007", "site": "lyon"}, "reading": {"at": 1767600000.25, "temp_c": 21.4}}

Output, on one topic, keyed like the input:

- a closed session (``session_window(...).final()``)::

    {"device": {...}, "session": {"start": 1767600000.25, "end": 1767600042.001}, "max_temp_c": 23.1, "readings": 9}

  ``start`` is the first reading's time, ``end`` Quix's exclusive end: the last reading's time + 1 ms;
- the moving average of the last ``AVG_COUNT`` readings once the window is full
  (``sliding_count_window(...).final()``), at the newest reading's time::

    {"device": {...}, "at": 1767600042.0, "avg_temp_c": 22.05}

Run as its own process: ``python app.py --broker HOST:PORT --input T --output T --app-id ID --state-dir DIR``.
Two switches stand for the incidents a deploy can cause: ``--bad-deploy`` reads temperatures as if they were
Fahrenheit-converted twice (a units bug), ``--sink`` sends the results to another topic (a misrouted sink).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from quixstreams import Application
from quixstreams.dataframe.windows import Count, Max, Mean

GAP_MS = 30_000  # a session ends after 30 s without a reading
GRACE_MS = 5_000
AVG_COUNT = 5  # the moving average of the last 5 readings


def event_time_ms(value: Any, key: Any, timestamp: int, headers: Any) -> int:
    """The reading's own time (epoch seconds) in ms, rounded to the nearest ms."""
    return round(float(value["reading"]["at"]) * 1000)


def seconds(ms: int) -> float:
    """Epoch ms as epoch seconds."""
    return ms / 1000


def device(key: str) -> dict[str, str]:
    """The device object from the record key ``site|id``."""
    site, _, ident = key.partition("|")
    return {"id": ident, "site": site}


def build(app: Application, input_topic: str, output_topic: str, bad_deploy: bool) -> None:
    """The pipeline: flatten a reading, then both windows to the output topic."""
    source = app.topic(
        input_topic, key_deserializer="str", value_deserializer="json", timestamp_extractor=event_time_ms
    )
    sink = app.topic(output_topic, key_serializer="str", value_serializer="json")
    sdf = app.dataframe(source)

    def flatten(value: dict[str, Any]) -> dict[str, Any]:
        temp = float(value["reading"]["temp_c"])
        if bad_deploy:
            temp = temp * 1.8 + 32  # the units bug of the bad release
        return {"temp": temp}

    sdf = sdf.apply(flatten)

    sessions = (
        sdf.session_window(inactivity_gap_ms=GAP_MS, grace_ms=GRACE_MS)
        .agg(max_temp_c=Max("temp"), readings=Count())
        .final()
    )
    sessions = sessions.apply(
        lambda w, key, ts, headers: {
            "device": device(key),
            "session": {"start": seconds(w["start"]), "end": seconds(w["end"])},
            "max_temp_c": w["max_temp_c"],
            "readings": w["readings"],
        },
        metadata=True,
    )
    sessions.to_topic(sink)

    moving = sdf.sliding_count_window(count=AVG_COUNT).agg(avg_temp_c=Mean("temp")).final()
    moving = moving.apply(
        lambda w, key, ts, headers: {"device": device(key), "at": seconds(w["end"]), "avg_temp_c": w["avg_temp_c"]},
        metadata=True,
    )
    moving.to_topic(sink)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--broker", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--app-id", required=True, help="the consumer group (a fresh one starts from the beginning)")
    p.add_argument("--state-dir", required=True)
    p.add_argument("--bad-deploy", action="store_true", help="the faulty release: temperatures converted wrongly")
    p.add_argument("--sink", help="send results here instead of --output (a misrouted sink)")
    args = p.parse_args()
    logging.getLogger("quixstreams").setLevel(logging.WARNING)
    app = Application(
        broker_address=args.broker,
        consumer_group=args.app_id,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        commit_interval=1.0,
        loglevel="WARNING",
    )
    build(app, args.input, args.sink or args.output, args.bad_deploy)
    app.run()


if __name__ == "__main__":
    main()
