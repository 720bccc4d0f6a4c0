"""An agent's in-context messages as the upstream sees them: wire bytes and tokens, kept as running totals.

A turn used to walk the whole in-context list twice (once to count tokens, once to encode the request),
so its cost grew with the agent's history. Stored messages never change once added, so each message is
encoded and counted once, and the totals are extended with what is new: a turn costs O(new messages).
`LiveAgent.messages` stays the list of record; anything but an append (eviction, a summary put first, a
reset) is noticed here and the totals are rebuilt from the per-message entries, without re-encoding.

A turn's budget check may take an upper bound for a new message's tokens instead of its count (`bound_ok`):
the count runs the tokenizer, which is slow on caches gone cold between turns, and the turn counts what it
deferred (`settle`) once its request is sent. Every other reader of the totals gets exact counts.

A request's estimate made from such totals is an `Estimate`: each count that replaces a bound it holds is taken
off it, and once all of them are, it is exact and calls back (the upstream's usage calibrates against it then,
not against bounds, and the stream never waits for a freshly loaded history to be counted).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from itertools import islice
from typing import Any

import orjson

from memory.context import wire_message
from memory.models import Message
from memory.tokens import TokenCounter


# One message's entry: (upstream encoding, token count), kept as two dicts by message id, not a tuple or an object
# per message. A dict holding only bytes or ints is not tracked by the collector, so a loaded history adds nothing
# to its lists: a full collection (a pause of every stream) does not walk it, and no young collection has to
# either. Tuples were dropped from the collector's lists only at a young collection, and replacing a bound by a
# count makes as many tuples as it frees: with the allocation count thus unchanged, the first turns of freshly
# loaded 5,000-message agents left tens of thousands of young tuples for one late collection of 14-48 ms.
Entry = tuple[bytes, int]


class Estimate:
    """A request's token estimate, exact once every bound it holds has been replaced by a count."""

    __slots__ = ("tokens", "upto", "exact", "then")

    def __init__(self, tokens: int, upto: int) -> None:
        self.tokens = tokens
        self.upto = upto  # it holds the bounds of the first `upto` bounded entries (in the order they were made)
        self.exact = False
        self.then: Callable[[int], None] | None = None  # called with the exact tokens, once

    def when_exact(self, then: Callable[[int], None]) -> None:
        """Call `then` with the exact tokens now if they are known, else once the last bound is counted."""
        if self.exact:
            then(self.tokens)
        else:
            self.then = then

    def _settled(self) -> None:
        self.exact = True
        then, self.then = self.then, None
        if then is not None:
            then(self.tokens)


class InContext:
    """Per-message entries plus the joined bytes and token total of the messages synced so far."""

    __slots__ = ("_wire", "_tokens", "_joined", "_total", "_synced", "_first", "_last", "_bounded", "_bounds_made",
                 "_bounds_counted", "_open", "_settling")

    def __init__(self) -> None:
        self._wire: dict[str, bytes] = {}  # message id -> its upstream encoding
        self._tokens: dict[str, int] = {}  # message id -> its tokens (a count, or a bound while in `_bounded`)
        # b",".join(wire) of messages[:_synced]; grown in place, sent as a view of it, never changed otherwise
        self._joined = bytearray()
        self._total = 0  # tokens of messages[:_synced]
        self._synced = 0
        self._first: Message | None = None  # messages[0] and messages[_synced - 1] when last synced: any change
        self._last: Message | None = None  # to the list other than an append moves one of them
        # Entries whose token figure is an upper bound, not a count (id -> wire message, to count it later).
        # Every one of them is within messages[:_synced], so in `_total` too.
        self._bounded: dict[str, dict[str, Any]] = {}
        # Bounded entries made and counted so far, in order (a settle always counts the oldest first), and the
        # estimates still holding some of them.
        self._bounds_made = 0
        self._bounds_counted = 0
        self._open: list[Estimate] = []
        self._settling = False  # a `settle_soon` chain is scheduled

    def entry(self, message: Message, counter: TokenCounter, bound_ok: bool = False) -> Entry:
        """The message's entry, made on first use; with `bound_ok` its tokens may be an upper bound.

        Only `sync` asks with `bound_ok` (a bounded entry must be in the totals) and it settles at its end
        when exact counts were asked for.
        """
        encoded = self._wire.get(message.id)
        if encoded is not None:
            return encoded, self._tokens[message.id]
        wire = wire_message(message)
        bound = counter.message_bound(wire) if bound_ok else None
        encoded = orjson.dumps(wire)
        if bound is None:
            tokens = counter.count_message(wire)
        else:
            tokens = bound
            self._bounded[message.id] = wire
            self._bounds_made += 1
        self._wire[message.id] = encoded
        self._tokens[message.id] = tokens
        return encoded, tokens

    def settle(self, counter: TokenCounter, limit: int | None = None) -> int:
        """Count the messages that only have a bound so far (the oldest `limit` of them, if given); returns how
        many tokens the totals dropped.

        Never called inside `sync`'s loop: after a rebuild the totals hold only part of the entries there.
        """
        bounded = self._bounded
        if limit is None or len(bounded) <= limit:
            batch, self._bounded = bounded, {}
        else:
            batch = {key: bounded.pop(key) for key in list(islice(bounded, limit))}
        dropped = 0
        counts = self._tokens
        start = self._bounds_counted
        reached: list[int] = []  # `dropped` after each entry of the batch, for the open estimates
        for message_id, wire in batch.items():
            bound = counts.get(message_id)
            if bound is not None:
                tokens = counter.count_message(wire)
                dropped += bound - tokens
                counts[message_id] = tokens
            reached.append(dropped)
        self._total -= dropped
        self._bounds_counted = start + len(reached)
        if self._open and reached:
            self._take_off(start, reached)
        return dropped

    def settle_soon(self, counter: TokenCounter, limit: int) -> None:
        """Count the bounds `limit` at a time, one slice per pass of the running event loop, until none is left.

        A freshly loaded history (thousands of messages, ~8-30 us each) is thus counted with the loop's other work
        between the slices, not in one stall of every stream; one chain per agent however many turns ask.
        """
        if self._settling or not self._bounded:
            return
        self._settling = True
        asyncio.get_running_loop().call_soon(self._settle_slice, counter, limit)

    def _settle_slice(self, counter: TokenCounter, limit: int) -> None:
        self._settling = False
        self.settle(counter, limit)
        self.settle_soon(counter, limit)

    def estimate(self, tokens: int) -> Estimate:
        """An estimate of `tokens` made from the totals now: what counting its bounds drops is taken off it."""
        estimate = Estimate(tokens, self._bounds_made)
        if estimate.upto <= self._bounds_counted:
            estimate.exact = True
        else:
            self._open.append(estimate)
        return estimate

    def _take_off(self, start: int, reached: list[int]) -> None:
        done: list[Estimate] = []
        still: list[Estimate] = []
        for estimate in self._open:
            held = min(estimate.upto - start, len(reached))  # how many of the batch's entries it holds
            if held > 0:
                estimate.tokens -= reached[held - 1]
            (done if estimate.upto <= self._bounds_counted else still).append(estimate)
        self._open = still
        for estimate in done:
            estimate._settled()

    @property
    def bounded(self) -> int:
        """How many entries hold a bound, not a count."""
        return len(self._bounded)

    def sync(self, messages: Sequence[Message], counter: TokenCounter, bound_ok: bool = False) -> None:
        """Bring the totals up to `messages`: extend them with appended messages, or rebuild if reshaped.

        With `bound_ok`, a new message's tokens may be an upper bound; without, the totals are exact after.
        """
        n = len(messages)
        synced = self._synced
        if synced and (n < synced or messages[0] is not self._first or messages[synced - 1] is not self._last):
            self._rebuild(messages)
            synced = 0
        if synced == n:
            if not bound_ok and self._bounded:
                self.settle(counter)
            return
        wires = [b""] if self._joined else []  # a leading comma when there is something to follow
        for message in messages[synced:]:
            wire, tokens = self.entry(message, counter, bound_ok)
            wires.append(wire)
            self._total += tokens
        added = b",".join(wires)
        try:
            self._joined += added
        except BufferError:  # a request body still being sent views it (context.splice_messages): copy, then grow
            self._joined = self._joined + added
        self._synced = n
        self._first = messages[0]
        self._last = messages[-1]
        if not bound_ok and self._bounded:
            self.settle(counter)

    async def catch_up(self, messages: Sequence[Message], counter: TokenCounter, step: int) -> None:
        """`sync(messages, bound_ok=True)` in steps of `step` messages, a pass of the event loop between them.

        A freshly loaded history (~6 us a message to encode and bound, 5,000 of them) would otherwise hold every
        other stream at once, on the turn's path to its upstream call.
        """
        while len(messages) - self._synced > step:
            self.sync(messages[:self._synced + step], counter, bound_ok=True)
            await asyncio.sleep(0)

    def _rebuild(self, messages: Sequence[Message]) -> None:
        keep = {m.id for m in messages}
        self._wire = {k: v for k, v in self._wire.items() if k in keep}
        self._tokens = {k: v for k, v in self._tokens.items() if k in keep}
        self._bounded = {k: v for k, v in self._bounded.items() if k in keep}
        # Estimates that held bounds of messages now gone can never be made exact: they are dropped, uncalled.
        # (Compaction counts every message before it evicts, so this is a reset's or a summary's rare case.)
        self._bounds_made, self._bounds_counted, self._open = len(self._bounded), 0, []
        self._joined = bytearray()
        self._total = 0
        self._synced = 0
        self._first = self._last = None

    def tokens(self, messages: Sequence[Message], counter: TokenCounter, bound_ok: bool = False) -> int:
        """Tokens of all in-context messages (framing included, reply priming not); with `bound_ok`, at most."""
        self.sync(messages, counter, bound_ok)
        return self._total

    def joined(self, messages: Sequence[Message], counter: TokenCounter) -> bytes | bytearray:
        """The in-context messages' JSON objects joined by commas (no brackets).

        New messages may be left bounded: the turn that builds a request body settles them once it is sent,
        and any exact read of the totals does before it answers.
        """
        self.sync(messages, counter, bound_ok=True)
        return self._joined

    def message_tokens(self, message: Message, counter: TokenCounter) -> int:
        """One message's tokens, counted (compaction plans with these)."""
        if message.id in self._bounded:
            self.settle(counter)
        return self.entry(message, counter)[1]

    def __len__(self) -> int:
        return len(self._wire)
