"""The bench's score reader: it waits for every score, and gives up early once the stream has all but stopped."""

from types import SimpleNamespace

import orjson
import pytest

from stream.errors import ChurnError
from stream.local import bench

pytestmark = pytest.mark.unit


class FakeMessage:
    def __init__(self, value: bytes) -> None:
        self._value = value

    def error(self):
        return None

    def value(self) -> bytes:
        return self._value


class FakeConsumer:
    """Hands out ``per_poll`` scores per ``consume`` call, each call taking ``seconds`` on a fake clock."""

    def __init__(self, per_poll: int, seconds: float) -> None:
        self.per_poll, self.seconds, self.now, self.sent = per_poll, seconds, 0.0, 0

    def __call__(self, config):  # stands in for the Consumer class
        return self

    def list_topics(self, topic, timeout):
        return SimpleNamespace(topics={topic: SimpleNamespace(partitions={0: None})})

    def assign(self, parts) -> None:
        pass

    def consume(self, n, timeout):
        self.now += self.seconds
        batch = [FakeMessage(orjson.dumps({"event_id": f"e{self.sent + i}"})) for i in range(self.per_poll)]
        self.sent += self.per_poll
        return batch

    def close(self) -> None:
        pass

    def clock(self) -> float:
        return self.now


def read(monkeypatch, consumer: FakeConsumer, expected: int, **kwargs):
    monkeypatch.setattr(bench, "Consumer", consumer)
    return bench._read_scores({}, "scores", expected, clock=consumer.clock, **kwargs)


def test_a_stream_that_keeps_up_is_read_to_the_last_score(monkeypatch):
    consumer = FakeConsumer(per_poll=100, seconds=0.25)  # 400 scores/s for 125 s
    scores = read(monkeypatch, consumer, 50_000, timeout=600, min_rate=20.0)
    assert [s["event_id"] for s in scores] == [f"e{i}" for i in range(50_000)]


def test_a_crawling_stream_fails_after_one_window_naming_its_rate_and_the_hint(monkeypatch):
    consumer = FakeConsumer(per_poll=1, seconds=0.25)  # 4 scores/s
    with pytest.raises(ChurnError) as err:
        read(monkeypatch, consumer, 50_000, timeout=600, min_rate=20.0, hint=" (see README)")
    message = str(err.value)
    assert "slowed to 4.0 scores/s over the last 60s" in message and message.endswith("(see README)")
    assert 60 <= consumer.now <= 62  # one window, not the whole timeout


def test_without_a_minimum_rate_a_crawling_stream_is_waited_for_until_the_timeout(monkeypatch):
    consumer = FakeConsumer(per_poll=1, seconds=0.25)
    with pytest.raises(ChurnError, match="not within 300s"):
        read(monkeypatch, consumer, 50_000, timeout=300)
    assert consumer.now >= 300
