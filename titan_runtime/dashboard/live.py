"""The hub: one source per thing watched, fanned out to every browser watching it, over SSE.

The master must not pay per browser. A `Topic` is one source (the cluster watch, a run's watch, a
job's log follower, a shared poll) started when its first browser subscribes and stopped a little
after its last one leaves (`linger`: a page reload does not restart it). What it publishes goes to
every subscriber's bounded queue; each message is rendered once per variant (a writer's rows carry
buttons, a reader's do not) however many browsers get it.

A browser that does not keep up (its queue is full) is not waited for: its queue is emptied and it
is sent the topic's current state again (`snapshot`), so a slow tab costs memory bounded by its
queue, and the others never wait for it. A new subscriber starts with that snapshot too, so a page
rendered a moment ago misses nothing that changed before its stream opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

log = logging.getLogger("titan.dashboard")

#: Messages a subscriber may have waiting before it is sent a fresh snapshot instead.
QUEUE_LIMIT = 64
#: Seconds between keep-alive comments on an idle stream (proxies close silent connections).
PING_EVERY = 15.0
#: Seconds a topic outlives its last subscriber.
LINGER = 10.0


class Busy(Exception):
    """Too many topics of one kind are open (each holds a stream to the master)."""


class Message:
    """One server-sent event. `data` is text, or a function of the variant (True: a writer's) that
    renders it; either way it is encoded once per variant, however many subscribers get it."""

    __slots__ = ("_encoded", "data", "event", "id")

    def __init__(self, event: str, data: str | Callable[[bool], str], id: str = "") -> None:
        self.event = event
        self.data = data
        self.id = id
        self._encoded: dict[bool, bytes] = {}

    @classmethod
    def json(cls, event: str, value: Any, id: str = "") -> Message:
        return cls(event, json.dumps(value, separators=(",", ":")), id)

    def encode(self, writer: bool) -> bytes:
        found = self._encoded.get(writer)
        if found is None:
            data = self.data(writer) if callable(self.data) else self.data
            lines = [f"event: {self.event}"]
            if self.id:
                lines.append(f"id: {self.id}")
            lines.extend(f"data: {line}" for line in data.replace("\r", "").split("\n"))
            found = self._encoded[writer] = ("\n".join(lines) + "\n\n").encode()
        return found


class Subscription:
    """One browser's stream: a bounded queue fed by the topics it joined (None ends it), and the
    events it wants (None: all)."""

    def __init__(self, writer: bool, events: Iterable[str] | None = None, limit: int = QUEUE_LIMIT) -> None:
        self.writer = writer
        self.events = frozenset(events) if events is not None else None
        self.queue: asyncio.Queue[Message | None] = asyncio.Queue(limit)
        self.topics: list[Topic] = []
        self.resent = 0  # times it fell behind and was sent a snapshot instead

    def wants(self, message: Message) -> bool:
        return self.events is None or message.event in self.events

    def deliver(self, messages: Iterable[Message]) -> None:
        for message in messages:
            if not self.wants(message):
                continue
            try:
                self.queue.put_nowait(message)
            except asyncio.QueueFull:
                self._catch_up()
                return

    def _catch_up(self) -> None:
        """Fallen behind: drop what waits, and start again from every joined topic's state."""
        self.resent += 1
        while not self.queue.empty():
            self.queue.get_nowait()
        fresh = [m for topic in self.topics for m in topic.snapshot() if self.wants(m)]
        for message in fresh[: self.queue.maxsize - 1]:
            self.queue.put_nowait(message)

    def end(self) -> None:
        """No more messages: the stream closes (its session ended)."""
        while True:
            try:
                self.queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()


class Topic:
    """A source shared by its subscribers. Subclasses implement `run` (publish as things change;
    it may return when there is nothing more to say) and `snapshot` (the state now)."""

    kind = "topic"

    def __init__(self, key: str) -> None:
        self.key = key
        self.subscribers: set[Subscription] = set()
        self.task: asyncio.Task[None] | None = None
        self.permanent = False
        self._linger: asyncio.TimerHandle | None = None

    def snapshot(self) -> list[Message]:
        return []

    async def run(self) -> None:
        """Produce messages with `publish` until cancelled (or there is nothing more)."""

    def publish(self, *messages: Message) -> None:
        for subscriber in list(self.subscribers):
            subscriber.deliver(messages)

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._guarded(), name=f"dashboard {self.key}")

    async def _guarded(self) -> None:
        try:
            await self.run()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in one feed must not take the hub down; say so and stop it
            log.exception("dashboard feed %s failed", self.key)

    async def stop(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


class Hub:
    """The topics open in this process, by key, each started on first use and stopped after its last
    subscriber leaves. `limits` caps the topics of a kind (a run's watch counts against the master's
    watchers: a dashboard must leave room for others)."""

    def __init__(self, limits: dict[str, int] | None = None, linger: float = LINGER) -> None:
        self.topics: dict[str, Topic] = {}
        self.limits = limits or {}
        self.linger = linger

    def open_count(self, kind: str) -> int:
        return sum(1 for t in self.topics.values() if t.kind == kind)

    def add_permanent(self, topic: Topic) -> Topic:
        """A topic that runs for the process's life (the cluster watch), subscribed or not."""
        topic.permanent = True
        self.topics[topic.key] = topic
        topic.start()
        return topic

    def join(self, sub: Subscription, key: str, make: Callable[[], Topic]) -> Topic:
        """Subscribe `sub` to the topic `key` (made with `make` if none is open) and send it the
        topic's state. Busy when the kind is at its limit."""
        topic = self.topics.get(key)
        if topic is None:
            topic = make()
            limit = self.limits.get(topic.kind)
            if limit is not None and self.open_count(topic.kind) >= limit:
                raise Busy(f"{limit} live {topic.kind} views are open, the most this dashboard holds")
            self.topics[key] = topic
            topic.start()
        elif topic._linger is not None:
            topic._linger.cancel()
            topic._linger = None
        topic.subscribers.add(sub)
        sub.topics.append(topic)
        sub.deliver(topic.snapshot())
        return topic

    def hold(self, key: str, make: Callable[[], Topic]) -> Topic:
        """The topic `key`, opened (with `make`) if none is, without subscribing to it: it lingers
        as after its last subscriber left. A page rendered from a topic's state uses it, so the
        page's own stream, opened a moment later, finds the same topic still open."""
        held = Subscription(False, events=())
        topic = self.join(held, key, make)
        self.leave(held)
        return topic

    def leave(self, sub: Subscription) -> None:
        for topic in sub.topics:
            topic.subscribers.discard(sub)
            if not topic.subscribers and not topic.permanent and self.topics.get(topic.key) is topic:
                topic._linger = asyncio.get_running_loop().call_later(self.linger, self._retire, topic)
        sub.topics.clear()

    def _retire(self, topic: Topic) -> None:
        if topic.subscribers or self.topics.get(topic.key) is not topic:
            return
        del self.topics[topic.key]
        _background(topic.stop())

    async def close(self) -> None:
        topics, self.topics = list(self.topics.values()), {}
        for topic in topics:
            await topic.stop()


_tasks: set[asyncio.Task[Any]] = set()


def _background(coro: Any) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def event_stream(
    sub: Subscription, join: Callable[[], None], leave: Callable[[], None]
) -> AsyncIterator[bytes]:
    """The bytes of a text/event-stream for `sub`: `join` its topics once the response streams (a
    browser gone before it began joins nothing), their messages as they come, a comment every
    PING_EVERY seconds of quiet, and `leave` when the browser goes or the session ends."""
    try:
        join()
        yield b"retry: 3000\n\n"
        while True:
            try:
                message = await asyncio.wait_for(sub.queue.get(), PING_EVERY)
            except asyncio.TimeoutError:
                yield b": ping\n\n"
                continue
            if message is None:
                return
            yield message.encode(sub.writer)
    finally:
        leave()
