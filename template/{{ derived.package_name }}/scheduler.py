"""The server's decoding loop: one thread runs the Decoder, and requests join and leave between its steps.

HTTP handlers run on asyncio's event loop and must never wait for the model; the model must never wait for a
client. So:
- a handler submit()s its Sequence and reads the Events for it from an asyncio.Queue on its own loop;
- the scheduler thread moves waiting requests into free rows of the Decoder (one prefill for all that join),
  runs one step for every running request, and puts each Event on its request's queue with
  loop.call_soon_threadsafe, which never blocks: a slow client only lets its own queue grow (by at most
  max_tokens events), and the others' tokens keep coming;
- a handler whose client went away cancel()s; its row is freed before the next step;
- a failure ends only the requests it concerns: a row whose sampling fails leaves alone, a failed prefill ends
  the requests joining in it, and only a failed step (one forward pass for all rows) ends every running one.
At most max_waiting requests wait for a row: submit() refuses more with Busy, which the server answers with 429.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .decoding import Decoder, Event, Sequence


class Busy(Exception):
    """Too many requests are waiting already."""


@dataclass(eq=False)
class Request:
    """One sequence in the scheduler, and where its Events go (the last one carries the error if decoding failed)."""

    seq: Sequence
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    submitted: float = field(default_factory=time.monotonic)
    cancelled: bool = False


class Scheduler:
    """Runs `decoder` on a thread of its own: start(), then submit() and cancel() from any thread, stop()."""

    def __init__(self, decoder: Decoder, max_waiting: int):
        self.decoder, self.max_waiting = decoder, max_waiting
        self.waiting: list[Request] = []
        self.running: dict[Sequence, Request] = {}
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="decoder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish what is running and waiting, then end the thread."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join()

    def submit(self, seq: Sequence) -> Request:
        """Queue `seq`; call from the event loop whose queue will receive its Events."""
        request = Request(seq, asyncio.get_running_loop())
        with self._wake:
            if len(self.waiting) >= self.max_waiting:
                raise Busy(f"{len(self.waiting)} requests are already waiting for one of "
                           f"{self.decoder.max_batch} decoding slots: try again later")
            self.waiting.append(request)
            self._wake.notify()
        return request

    def cancel(self, request: Request) -> None:
        """The client is gone: drop the request before the next step."""
        with self._wake:
            request.cancelled = True

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not (self.waiting or self.running or self._stopping):
                    self._wake.wait()
                if self._stopping and not (self.waiting or self.running):
                    return
                joining = [r for r in self.waiting[: self.decoder.free] if not r.cancelled]
                del self.waiting[: self.decoder.free]
                leaving = [r for r in self.running.values() if r.cancelled]
            for request in leaving:
                self.decoder.remove(request.seq)
                del self.running[request.seq]
            self.running.update((r.seq, r) for r in joining)
            if joining:
                self._run(lambda: self.decoder.add([r.seq for r in joining]), joining)
            if self.decoder.rows:
                self._run(self.decoder.step, list(self.running.values()))

    def _run(self, work: Callable[[], list[Event]], taking_part: list[Request]) -> None:
        """Deliver the events of `work` (a prefill or a step). A row whose sampling fails ends alone (Decoder's
        failure event); a forward pass that fails ends only the requests `taking_part` in it: a failed prefill
        of the joining requests leaves the running ones decoding."""
        try:
            events = work()
        except Exception as e:  # noqa: BLE001 - a failed pass ends its requests, not the server
            events = [Event.failure(r.seq, e) for r in taking_part]
            for request in taking_part:
                if request.seq in self.decoder.rows:
                    self.decoder.remove(request.seq)
        self._deliver(events)

    def _deliver(self, events: list[Event]) -> None:
        """Hand each event to its request's queue: one wake-up of each event loop per step, not one per event."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Request, Event]]] = {}
        for event in events:
            request = self.running[event.seq]
            if event.finished:
                del self.running[event.seq]
            by_loop.setdefault(request.loop, []).append((request, event))
        for loop, pairs in by_loop.items():
            loop.call_soon_threadsafe(_put_all, pairs)


def _put_all(pairs: list[tuple[Request, Event]]) -> None:
    for request, event in pairs:
        request.events.put_nowait(event)
