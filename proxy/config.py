"""Settings: every knob is a `MEMPROXY_*` environment variable and a `memproxy serve` flag."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class Option:
    """One setting: its env variable, CLI flag, type and help text."""

    name: str
    env: str
    default: Any
    kind: type
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option("host", "MEMPROXY_HOST", "127.0.0.1", str, "bind address"),
    Option("port", "MEMPROXY_PORT", 8283, int, "bind port (8283 is Letta's, for drop-in use)"),
    Option("data_dir", "MEMPROXY_DATA_DIR", "./.memproxy", str, "directory for the DuckDB file and LanceDB tables"),
    Option("database_url", "MEMPROXY_DATABASE_URL", None, str,
           "postgresql://user:pass@host:5432/db for the PostgreSQL backend; unset = embedded DuckDB + LanceDB"),
    Option("upstream_url", "MEMPROXY_UPSTREAM_URL", None, str,
           "OpenAI-compatible base URL ending in /v1; unset = the built-in simulator"),
    Option("upstream_api_key", "MEMPROXY_UPSTREAM_API_KEY", None, str, "key sent upstream (default $OPENAI_API_KEY)"),
    Option("upstream_ca_bundle", "MEMPROXY_UPSTREAM_CA_BUNDLE", None, str,
           "CA file trusted for every upstream call; unset = SSL_CERT_FILE/SSL_CERT_DIR, else the OS store"),
    Option("default_model", "MEMPROXY_DEFAULT_MODEL", "gpt-4o-mini", str, "upstream model for agents created without one"),
    Option("embedding_model", "MEMPROXY_EMBEDDING_MODEL", None, str,
           "upstream embedding model; unset = recall/archival search is full-text only"),
    Option("api_keys", "MEMPROXY_API_KEYS", None, str, "comma-separated bearer keys; unset = no auth (loopback only)"),
    Option("redis_url", "MEMPROXY_REDIS_URL", None, str, "Redis URL for cross-process coordination; unset = in-process"),
    Option("redis_prefix", "MEMPROXY_REDIS_PREFIX", "memproxy:", str,
           "prefix of every Redis key and channel (several deployments may share one Redis)"),
    Option("workers", "MEMPROXY_WORKERS", 1, int,
           "server processes sharing the port; more than 1 needs MEMPROXY_DATABASE_URL and MEMPROXY_REDIS_URL"),
    Option("lock_ttl", "MEMPROXY_LOCK_TTL", 15.0, float,
           "seconds a turn lock outlives a silent holder (renewed every third of it while the turn runs)"),
    Option("max_body_bytes", "MEMPROXY_MAX_BODY_BYTES", 32 * 1024 * 1024, int, "largest accepted request body"),
    Option("max_inline_bytes", "MEMPROXY_MAX_INLINE_BYTES", 20 * 1024 * 1024, int,
           "largest inline data (images, audio, files as data) one message may store; beyond it 413"),
    Option("max_steps", "MEMPROXY_MAX_STEPS", 50, int, "upstream calls allowed in one agent turn"),
    Option("agent_lock_timeout", "MEMPROXY_AGENT_LOCK_TIMEOUT", 30.0, float,
           "seconds a request waits for the agent's previous turn before 409"),
    Option("upstream_timeout", "MEMPROXY_UPSTREAM_TIMEOUT", 120.0, float, "seconds to wait on the upstream"),
    Option("keepalive_interval", "MEMPROXY_KEEPALIVE_INTERVAL", 2.0, float,
           "seconds between SSE keep-alive comments while nothing else is sent"),
    Option("context_window", "MEMPROXY_CONTEXT_WINDOW", 128000, int,
           "tokens of context for models the built-in table does not know (agents may set their own)"),
    Option("tool_timeout", "MEMPROXY_TOOL_TIMEOUT", 30.0, float,
           "seconds one custom tool call may run in the sandbox before it is killed"),
    Option("tool_memory_mb", "MEMPROXY_TOOL_MEMORY_MB", 512, int, "address-space limit of one custom tool call, MiB"),
    Option("tool_pool", "MEMPROXY_TOOL_POOL", 2, int, "custom-tool processes kept started, each for one call"),
    Option("mcp_timeout", "MEMPROXY_MCP_TIMEOUT", 30.0, float,
           "seconds one MCP tool call (or tool listing) may take before it is a tool error"),
    Option("mcp_connect_timeout", "MEMPROXY_MCP_CONNECT_TIMEOUT", 10.0, float,
           "seconds to connect to an MCP server (or wait for a restarting stdio server) before giving up"),
    Option("secret_key", "MEMPROXY_SECRET_KEY", None, str,
           "key encrypting tool variables at rest (unset: secret.key in the data dir; replicas must share one)"),
    Option("log_level", "MEMPROXY_LOG_LEVEL", "info", str, "debug | info | warning | error"),
    Option("log_format", "MEMPROXY_LOG_FORMAT", "text", str,
           "text | json (one object per line with request, agent and run ids; never content or secrets)"),
    Option("duckdb_memory_limit", "MEMPROXY_DUCKDB_MEMORY_LIMIT", "256MB", str,
           "most memory DuckDB's buffer pool keeps (e.g. 512MB, 2GB); blocks beyond it are re-read from disk"),
    Option("search_cache_mb", "MEMPROXY_SEARCH_CACHE_MB", 16, int,
           "MiB of LanceDB index and metadata cache for recall and archival search"),
    Option("search_optimize_interval", "MEMPROXY_SEARCH_OPTIMIZE_INTERVAL", 10.0, float,
           "seconds between compactions of the search tables while they are written (each one holds memory)"),
    Option("search_reopen_interval", "MEMPROXY_SEARCH_REOPEN_INTERVAL", 10.0, float,
           "least seconds between reopening the search tables after a compaction (frees readers and buffers of "
           "replaced index versions; the default reopens after every compaction); 0 = never"),
    Option("agent_cache_size", "MEMPROXY_AGENT_CACHE_SIZE", 20000, int,
           "agents kept loaded in memory (least recently used are dropped, and reloaded on their next request)"),
    Option("malloc_trim_interval", "MEMPROXY_MALLOC_TRIM_INTERVAL", 30.0, float,
           "seconds between returning freed native memory to the OS (glibc malloc_trim); 0 = never"),
    Option("memory_report_interval", "MEMPROXY_MEMORY_REPORT_INTERVAL", 0.0, float,
           "seconds between log lines of where memory goes (RSS parts, heap, caches); 0 = never"),
    Option("resumable_ttl", "MEMPROXY_RESUMABLE_TTL", 3600.0, float,
           "seconds a resumable run's events stay in Redis after its last event"),
    Option("resumable_max_events", "MEMPROXY_RESUMABLE_MAX_EVENTS", 100000, int,
           "events kept per resumable run (the oldest are trimmed beyond it)"),
)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8283
    data_dir: str = "./.memproxy"
    database_url: str | None = field(default=None, repr=False)  # may hold a password: never in a repr or log
    upstream_url: str | None = None
    upstream_api_key: str | None = None
    upstream_ca_bundle: str | None = None
    default_model: str = "gpt-4o-mini"
    embedding_model: str | None = None
    api_keys: tuple[str, ...] = ()
    redis_url: str | None = field(default=None, repr=False)  # may hold a password
    redis_prefix: str = "memproxy:"
    workers: int = 1
    lock_ttl: float = 15.0
    max_body_bytes: int = 32 * 1024 * 1024
    max_inline_bytes: int = 20 * 1024 * 1024
    max_steps: int = 50
    agent_lock_timeout: float = 30.0
    upstream_timeout: float = 120.0
    keepalive_interval: float = 2.0
    context_window: int = 128000
    tool_timeout: float = 30.0
    tool_memory_mb: int = 512
    tool_pool: int = 2
    mcp_timeout: float = 30.0
    mcp_connect_timeout: float = 10.0
    secret_key: str | None = field(default=None, repr=False)  # never in a repr or log
    log_level: str = "info"
    log_format: str = "text"
    duckdb_memory_limit: str = "256MB"
    search_cache_mb: int = 16
    search_optimize_interval: float = 10.0
    search_reopen_interval: float = 10.0
    agent_cache_size: int = 20000
    malloc_trim_interval: float = 30.0
    memory_report_interval: float = 0.0
    resumable_ttl: float = 3600.0
    resumable_max_events: int = 100000
    insecure: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    @property
    def uses_simulator(self) -> bool:
        return not self.upstream_url

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS or self.host.startswith("127.")

    def scale_problem(self) -> str | None:
        """One sentence saying what a multi-process setup lacks, or None when the combination is served."""
        if self.workers < 1:
            return f"MEMPROXY_WORKERS must be 1 or more, not {self.workers}"
        if self.lock_ttl < 1:
            return f"MEMPROXY_LOCK_TTL must be at least 1 second, not {self.lock_ttl:g}"
        if self.workers == 1:
            return None
        missing = [name for name, value in (("MEMPROXY_DATABASE_URL", self.database_url),
                                            ("MEMPROXY_REDIS_URL", self.redis_url)) if not value]
        if not missing:
            return None
        return (f"{self.workers} workers need {' and '.join(missing)} (the embedded backend and in-process "
                "locks serve one process only); set them or run one worker")

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
        """Defaults, then the environment, then explicit overrides (CLI flags); None means unset."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for opt in OPTIONS:
            raw = env.get(opt.env)
            if raw not in (None, ""):
                values[opt.name] = _coerce(opt, raw)
        if "upstream_api_key" not in values and env.get("OPENAI_API_KEY"):
            values["upstream_api_key"] = env["OPENAI_API_KEY"]
        for key, value in (overrides or {}).items():
            if value is not None:
                values[key] = value
        if isinstance(values.get("api_keys"), str):
            values["api_keys"] = tuple(k.strip() for k in values["api_keys"].split(",") if k.strip())
        if values.get("upstream_url"):
            values["upstream_url"] = str(values["upstream_url"]).rstrip("/")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def _coerce(opt: Option, raw: str) -> Any:
    try:
        if opt.kind is int:
            return int(raw)
        if opt.kind is float:
            return float(raw)
    except ValueError:
        raise ValueError(f"{opt.env} must be {'an integer' if opt.kind is int else 'a number'}, not {raw!r}") from None
    return raw
