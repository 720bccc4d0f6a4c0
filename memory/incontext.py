"""An agent's in-context messages as the upstream sees them: wire bytes and tokens, kept as running totals.

A turn used to walk the whole in-context list twice (once to count tokens, once to encode the request),
so its cost grew with the agent's history. Stored messages never change once added, so each message is
encoded and counted once, and the totals are extended with what is new: a turn costs O(new messages).
`LiveAgent.messages` stays the list of record; anything but an append (eviction, a summary put first, a
reset) is noticed here and the totals are rebuilt from the per-message entries, without re-encoding.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from memory.context import wire_message
from memory.models import Message
from memory.tokens import TokenCounter


# One message's entry: (upstream encoding, token count). A plain tuple, not an object: the collector drops a
# tuple of a bytes and an int from its lists at its first collection, so the entries of every loaded agent are
# not walked by each full collection again. 96 agents x 5,000 messages: 975k tracked objects -> 494k, and a
# full collection (a pause of every stream) 237 -> 166 ms of CPU, measured offline.
Entry = tuple[bytes, int]


class InContext:
    """Per-message entries plus the joined bytes and token total of the messages synced so far."""

    __slots__ = ("_entries", "_joined", "_total", "_synced", "_first", "_last")

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        # b",".join(wire) of messages[:_synced]; grown in place, sent as a view of it, never changed otherwise
        self._joined = bytearray()
        self._total = 0  # tokens of messages[:_synced]
        self._synced = 0
        self._first: Message | None = None  # messages[0] and messages[_synced - 1] when last synced: any change
        self._last: Message | None = None  # to the list other than an append moves one of them

    def entry(self, message: Message, counter: TokenCounter) -> Entry:
        """The message's entry, made on first use."""
        entry = self._entries.get(message.id)
        if entry is None:
            wire = wire_message(message)
            entry = self._entries[message.id] = (orjson.dumps(wire), counter.count_message(wire))
        return entry

    def sync(self, messages: Sequence[Message], counter: TokenCounter) -> None:
        """Bring the totals up to `messages`: extend them with appended messages, or rebuild if reshaped."""
        n = len(messages)
        synced = self._synced
        if synced and (n < synced or messages[0] is not self._first or messages[synced - 1] is not self._last):
            self._rebuild(messages)
            synced = 0
        if synced == n:
            return
        wires = [b""] if self._joined else []  # a leading comma when there is something to follow
        for message in messages[synced:]:
            wire, tokens = self.entry(message, counter)
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

    def _rebuild(self, messages: Sequence[Message]) -> None:
        keep = {m.id for m in messages}
        self._entries = {k: v for k, v in self._entries.items() if k in keep}
        self._joined = bytearray()
        self._total = 0
        self._synced = 0
        self._first = self._last = None

    def tokens(self, messages: Sequence[Message], counter: TokenCounter) -> int:
        """Tokens of all in-context messages (framing included, reply priming not)."""
        self.sync(messages, counter)
        return self._total

    def joined(self, messages: Sequence[Message], counter: TokenCounter) -> bytes | bytearray:
        """The in-context messages' JSON objects joined by commas (no brackets)."""
        self.sync(messages, counter)
        return self._joined

    def message_tokens(self, message: Message, counter: TokenCounter) -> int:
        return self.entry(message, counter)[1]

    def __len__(self) -> int:
        return len(self._entries)
