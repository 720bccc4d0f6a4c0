"""Seed a memproxy data dir quickly: one template agent made through the API, then bulk SQL clones.

The template is created by memproxy itself (so every column holds what the server writes); clones,
their four blocks and their message history are then written straight into the DuckDB file with
`INSERT ... SELECT FROM range(n)`, while memproxy is stopped. Only the last `in_context` messages of
each agent are marked in context; the rest is history, as after a long conversation.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import httpx

DATABASE_FILE = "memproxy.duckdb"
IN_CONTEXT = 50

TEMPLATE_AGENT = {
    "name": "bench-template",
    "system": ("You are a helpful voice assistant with a persistent memory. Keep answers short and friendly; "
               "update your memory blocks when you learn something about the user."),
    "memory_blocks": [
        {"label": "persona", "value": "I am Sam, a concise and warm assistant. I speak plainly, avoid jargon, "
                                      "and keep replies under three sentences unless asked for detail."},
        {"label": "human", "value": "Name: Alex. Lives in Lyon. Works as a nurse on night shifts. Prefers "
                                    "metric units. Allergic to peanuts. Has a dog called Miso."},
        {"label": "preferences", "value": "Likes jazz and long walks. Dislikes small talk about weather. "
                                          "Wants reminders phrased as questions."},
        {"label": "project", "value": "Planning a two-week trip to Japan in April: Tokyo, Kyoto, Osaka. "
                                      "Budget 3000 EUR. Needs vegetarian restaurant ideas."},
    ],
}


def create_template(base_url: str) -> str:
    """Create the template agent through memproxy's API; return its id."""
    response = httpx.post(base_url + "/v1/agents/", json=TEMPLATE_AGENT, timeout=30.0)
    response.raise_for_status()
    return str(response.json()["id"])


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    rows = con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                       "ORDER BY ordinal_position", [table]).fetchall()
    return [row[0] for row in rows]


def _select_list(columns: list[str], overrides: dict[str, str], alias: str) -> str:
    return ", ".join(overrides.get(c, f'{alias}."{c}"') for c in columns)


def clone_agents(data_dir: Path, template_id: str, count: int, messages: int, tag: str = "clone",
                 *, autoclear: bool = False, in_context: int = IN_CONTEXT,
                 context_window: int | None = None) -> list[str]:
    """Insert `count` copies of the template (own blocks each) with `messages` stored messages apiece.

    The last `in_context` of them are in context. `autoclear` sets `message_buffer_autoclear`: such agents
    keep no conversation in context. `context_window` sets `context_window_limit`.
    """
    overrides = {"message_buffer_autoclear": "true" if autoclear else "a.message_buffer_autoclear"}
    if context_window is not None:
        overrides["context_window_limit"] = str(int(context_window))
    con = duckdb.connect(str(data_dir / DATABASE_FILE))
    try:
        con.execute("BEGIN TRANSACTION")
        con.execute("CREATE OR REPLACE TEMP TABLE new_agents AS "
                    "SELECT 'agent-' || uuid()::VARCHAR AS id, i FROM range(?) t(i)", [count])
        agent_cols = _select_list(_columns(con, "agents"),
                                  {"id": "n.id", "name": f"'{tag}-' || n.i::VARCHAR", **overrides}, "a")
        con.execute(f"INSERT INTO agents SELECT {agent_cols} FROM agents a, new_agents n WHERE a.id = ?",
                    [template_id])
        con.execute("CREATE OR REPLACE TEMP TABLE new_blocks AS "
                    "SELECT n.id AS agent_id, ab.block_id AS src, ab.position, 'block-' || uuid()::VARCHAR AS id "
                    "FROM new_agents n, agent_blocks ab WHERE ab.agent_id = ?", [template_id])
        block_cols = _select_list(_columns(con, "blocks"), {"id": "nb.id"}, "b")
        con.execute(f"INSERT INTO blocks SELECT {block_cols} FROM new_blocks nb JOIN blocks b ON b.id = nb.src")
        con.execute("INSERT INTO agent_blocks (agent_id, block_id, position) "
                    "SELECT agent_id, id, position FROM new_blocks")
        if messages:
            con.execute(
                "INSERT INTO messages (id, agent_id, seq, role, content, tool_calls, tool_call_id, name, run_id, "
                "in_context, metadata, created_at) "
                "SELECT 'message-' || uuid()::VARCHAR, n.id, s.i + 1, "
                "CASE WHEN s.i % 2 = 0 THEN 'user' ELSE 'assistant' END, "
                "CASE WHEN s.i % 2 = 0 THEN 'Question ' || s.i::VARCHAR || ': what should I pack for the "
                "trip, and can you remind me about the dog sitter?' ELSE 'Answer ' || s.i::VARCHAR || "
                "': pack light layers and a rain jacket; I will remind you about Miso''s sitter on Friday.' END, "
                "NULL, NULL, NULL, NULL, s.i >= ? - ?, '{}', now() - to_seconds(? - s.i) "
                "FROM new_agents n, range(?) s(i)",
                [messages, in_context, messages, messages])
        ids = [row[0] for row in con.execute("SELECT id FROM new_agents ORDER BY i").fetchall()]
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
        return ids
    finally:
        con.close()


def agent_ids(data_dir: Path, name_prefix: str) -> list[str]:
    """Ids of the agents whose name starts with `name_prefix`, by name."""
    con = duckdb.connect(str(data_dir / DATABASE_FILE), read_only=True)
    try:
        rows = con.execute("SELECT id FROM agents WHERE starts_with(name, ?) ORDER BY name", [name_prefix]).fetchall()
        return [row[0] for row in rows]
    finally:
        con.close()


def count_rows(data_dir: Path) -> dict[str, int]:
    con = duckdb.connect(str(data_dir / DATABASE_FILE), read_only=True)
    try:
        return {t: int(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # type: ignore[index]
                for t in ("agents", "blocks", "messages", "runs")}
    finally:
        con.close()


# --- archival passages (LanceDB), for the search suite -----------------------------------------------

LANCE_DIR = "lance"
PASSAGE_TOPICS = ("trip", "kyoto", "tokyo", "osaka", "budget", "train", "hotel", "ramen", "temple", "garden",
                  "dog", "miso", "sitter", "walk", "jazz", "concert", "shift", "hospital", "night", "sleep",
                  "peanut", "allergy", "recipe", "vegetarian", "market", "museum", "rain", "jacket", "passport",
                  "ticket", "reminder", "friday", "birthday", "sister", "lyon", "bakery", "coffee", "bike")


def passage_vocabulary(size: int = 3000, seed: int = 7) -> list[str]:
    """Deterministic pseudo-words (plus a few topical words) for seeded passage text and search queries."""
    import random

    rng = random.Random(seed)
    syllables = ["ka", "ri", "to", "me", "su", "no", "la", "vi", "de", "po", "ne", "shi", "ra", "mo", "tu", "be"]
    words = set(PASSAGE_TOPICS)
    while len(words) < size:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def passage_items(start: int, count: int, vocabulary: list[str], words: int = 30) -> list[tuple[str, list[str]]]:
    """`count` passages (text, tags) numbered from `start`: ~`words` words drawn from `vocabulary`."""
    import random

    out = []
    for i in range(start, start + count):
        rng = random.Random(i)
        text = f"Note {i}: " + " ".join(rng.choice(vocabulary) for _ in range(words)) + "."
        out.append((text, [f"topic-{i % 8}"]))
    return out


async def add_passages(data_dir: Path, agent_id: str, start: int, count: int, *, embedder: object = None,
                       batch: int = 5000) -> None:
    """Write passages straight into `<data_dir>/lance` (memproxy stopped), in large batches, then optimize."""
    from memory.longterm import LanceLongTermMemory

    vocabulary = passage_vocabulary()
    lt = LanceLongTermMemory(str(data_dir / LANCE_DIR), embedder)  # type: ignore[arg-type]
    await lt.open()
    try:
        for at in range(start, start + count, batch):
            await lt.add_passages(agent_id, passage_items(at, min(batch, start + count - at), vocabulary))
        await lt.flush()
        await lt.optimize()
    finally:
        await lt.close()


# --- the recall index (LanceDB), for the indexcost suite ----------------------------------------------

def recall_text(i: int, vocabulary: list[str], words: int = 20) -> str:
    """Deterministic varied text for the `i`-th seeded recall row (the clones' own texts differ only by a number)."""
    import random

    rng = random.Random(i)
    return " ".join(rng.choice(vocabulary) for _ in range(words))


async def index_recall(data_dir: Path, *, batch: int = 20_000) -> int:
    """Index every seeded message into `<data_dir>/lance`'s recall table (memproxy stopped), then optimize.

    The rows go through `LanceLongTermMemory.enqueue_messages(new=True)` and its write-behind queue, the
    path the server's turns take, in `batch`-row writes; ids, agents, roles and times are the stored
    messages' own, so the server's start-up repair finds nothing to fix. The text is varied pseudo-words
    (the clones' texts differ only by a number, which would make every full-text query match every row).
    """
    from memory.longterm import LanceLongTermMemory, RecallRecord
    from memory.longterm.schema import as_utc

    vocabulary = passage_vocabulary()
    lt = LanceLongTermMemory(str(data_dir / LANCE_DIR), None, recall_batch=batch)
    await lt.open()
    con = duckdb.connect(str(data_dir / DATABASE_FILE), read_only=True)
    done = 0
    try:
        cursor = con.execute("SELECT id, agent_id, role, created_at FROM messages WHERE content IS NOT NULL "
                             "AND length(content) > 0 AND role IN ('user', 'assistant') ORDER BY id")
        while rows := cursor.fetchmany(batch):
            lt.enqueue_messages([RecallRecord(id=r[0], agent_id=r[1], role=r[2], text=recall_text(done + k, vocabulary),
                                              created_at=as_utc(r[3]))
                                 for k, r in enumerate(rows)], new=True)
            done += len(rows)
            await lt.flush()
        await lt.optimize()
    finally:
        con.close()
        await lt.close()
    return done
