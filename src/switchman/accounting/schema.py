"""The ledger's schema, as numbered migrations shared by SQLite and PostgreSQL.

Each migration is a list of statements written once, with ``{int}`` and ``{real}`` standing for
the dialect's 64-bit integer and double types. A store applies, in one transaction each, every
migration above the version recorded in ``schema_version``, so a database written by an older
switchman is brought forward on start and a newer one is refused rather than misread.

Times are unix seconds (UTC) as doubles; money is integer picodollars (``records.to_pusd``).
Tags are kept twice: as JSON on the request, and one row per ``name=value`` in ``request_tags``
(with the request's time and cost copied) so spend by tag and tag budgets are one indexed scan.
Writes are idempotent on ``request_id`` (and ``request_id, idx`` for attempts), which lets a
spilled batch be replayed safely.
"""

from __future__ import annotations

TYPES = {
    "sqlite": {"int": "INTEGER", "real": "REAL"},
    "postgres": {"int": "BIGINT", "real": "DOUBLE PRECISION"},
}

MIGRATIONS: list[list[str]] = [
    # 1: requests, attempts, tags, virtual keys
    [
        """CREATE TABLE requests (
            request_id TEXT PRIMARY KEY,
            ts {real} NOT NULL,
            key_id TEXT,
            user_id TEXT,
            tags TEXT,
            route TEXT,
            model TEXT,
            provider TEXT,
            status {int} NOT NULL,
            error TEXT,
            input_tokens {int} NOT NULL,
            output_tokens {int} NOT NULL,
            cache_read_tokens {int} NOT NULL,
            cache_write_tokens {int} NOT NULL,
            cache_write_1h_tokens {int} NOT NULL,
            cost_pusd {int} NOT NULL,
            baseline_pusd {int} NOT NULL,
            latency_ms {real},
            ttft_ms {real},
            cache TEXT,
            reason TEXT,
            estimated {int} NOT NULL,
            attempts {int} NOT NULL,
            stream {int} NOT NULL
        )""",
        "CREATE INDEX requests_ts ON requests (ts)",
        "CREATE INDEX requests_key_ts ON requests (key_id, ts)",
        "CREATE INDEX requests_user_ts ON requests (user_id, ts)",
        """CREATE TABLE attempts (
            request_id TEXT NOT NULL,
            idx {int} NOT NULL,
            ts {real} NOT NULL,
            role TEXT NOT NULL,
            model TEXT NOT NULL,
            provider TEXT NOT NULL,
            status {int} NOT NULL,
            error TEXT,
            input_tokens {int} NOT NULL,
            output_tokens {int} NOT NULL,
            cache_read_tokens {int} NOT NULL,
            cache_write_tokens {int} NOT NULL,
            cache_write_1h_tokens {int} NOT NULL,
            cost_pusd {int} NOT NULL,
            latency_ms {real},
            ttft_ms {real},
            estimated {int} NOT NULL,
            PRIMARY KEY (request_id, idx)
        )""",
        "CREATE INDEX attempts_ts ON attempts (ts)",
        """CREATE TABLE request_tags (
            request_id TEXT NOT NULL,
            tag TEXT NOT NULL,
            ts {real} NOT NULL,
            cost_pusd {int} NOT NULL,
            baseline_pusd {int} NOT NULL,
            input_tokens {int} NOT NULL,
            output_tokens {int} NOT NULL,
            PRIMARY KEY (request_id, tag)
        )""",
        "CREATE INDEX request_tags_tag_ts ON request_tags (tag, ts)",
        """CREATE TABLE keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            hash TEXT NOT NULL UNIQUE,
            hint TEXT NOT NULL,
            created {real} NOT NULL,
            updated {real} NOT NULL,
            expires {real},
            revoked {real},
            user_id TEXT,
            tags TEXT,
            routes TEXT,
            rpm {int},
            tpm {int},
            budget_usd TEXT,
            budget_period TEXT
        )""",
        # A name is unique among live keys; a revoked key's name may be reused.
        "CREATE UNIQUE INDEX keys_live_name ON keys (name) WHERE revoked IS NULL",
        "CREATE INDEX keys_updated ON keys (updated)",
    ],
]

# Latency histogram of the rollups: upper bounds in ms, each √2 times the last (10 ms .. 92 s), then +inf.
LATENCY_BOUNDS = tuple(round(10 * 2 ** (k / 2), 1) for k in range(27))
HIST = ", ".join(f"lat_{i} {{int}} NOT NULL DEFAULT 0" for i in range(len(LATENCY_BOUNDS) + 1))
_MEASURES = (
    "requests {int} NOT NULL DEFAULT 0, errors {int} NOT NULL DEFAULT 0, streams {int} NOT NULL DEFAULT 0, "
    "cache_hits {int} NOT NULL DEFAULT 0, input_tokens {int} NOT NULL DEFAULT 0, "
    "output_tokens {int} NOT NULL DEFAULT 0, cost_pusd {int} NOT NULL DEFAULT 0, "
    "baseline_pusd {int} NOT NULL DEFAULT 0, latency_ms {real} NOT NULL DEFAULT 0, "
    "ttft_ms {real} NOT NULL DEFAULT 0, ttft_n {int} NOT NULL DEFAULT 0, "
    "feedback_n {int} NOT NULL DEFAULT 0, feedback_sum {real} NOT NULL DEFAULT 0"
)

MIGRATIONS.append([
    # 2: the request log (episode, dialect, why each attempt failed), feedback, kept bodies, and
    # rollups kept up to date as the ledger writes (see rollups.py)
    "ALTER TABLE requests ADD COLUMN episode TEXT",
    "ALTER TABLE requests ADD COLUMN dialect TEXT",
    "ALTER TABLE attempts ADD COLUMN detail TEXT",
    "CREATE INDEX requests_route_ts ON requests (route, ts)",
    "CREATE INDEX requests_model_ts ON requests (model, ts)",
    "CREATE INDEX requests_status_ts ON requests (status, ts)",
    "CREATE INDEX requests_episode ON requests (episode, ts) WHERE episode IS NOT NULL",
    """CREATE TABLE feedback (
        id TEXT PRIMARY KEY,
        ts {real} NOT NULL,
        request_id TEXT,
        episode TEXT,
        key_id TEXT,
        metric TEXT NOT NULL,
        score {real} NOT NULL,
        comment TEXT,
        route TEXT,
        model TEXT,
        request_ts {real}
    )""",
    "CREATE INDEX feedback_request ON feedback (request_id)",
    "CREATE INDEX feedback_episode ON feedback (episode)",
    "CREATE INDEX feedback_ts ON feedback (ts)",
    """CREATE TABLE bodies (
        request_id TEXT PRIMARY KEY,
        ts {real} NOT NULL,
        prompt TEXT,
        answer TEXT,
        truncated {int} NOT NULL
    )""",
    "CREATE INDEX bodies_ts ON bodies (ts)",
    f"CREATE TABLE rollup_minute (bucket {{real}} PRIMARY KEY, {_MEASURES}, {HIST})",
    f"""CREATE TABLE rollup_hour (bucket {{real}} NOT NULL, route TEXT NOT NULL, model TEXT NOT NULL,
        provider TEXT NOT NULL, key_id TEXT NOT NULL, {_MEASURES}, {HIST},
        PRIMARY KEY (bucket, route, model, provider, key_id))""",
    f"""CREATE TABLE rollup_day (bucket {{real}} NOT NULL, dim TEXT NOT NULL, value TEXT NOT NULL, {_MEASURES},
        PRIMARY KEY (dim, bucket, value))""",
])

MIGRATIONS.append([
    # 3: what provider prompt caching saved on each request against the same usage uncached
    "ALTER TABLE requests ADD COLUMN cache_saved_pusd {int} NOT NULL DEFAULT 0",
])

MIGRATIONS.append([
    # 4: Responses API responses kept for previous_response_id and GET /v1/responses/{id}
    # (accounting/responses.py): this turn's input items and the response, as JSON
    """CREATE TABLE responses (
        id TEXT PRIMARY KEY,
        ts {real} NOT NULL,
        scope TEXT NOT NULL,
        previous_id TEXT,
        input TEXT NOT NULL,
        response TEXT NOT NULL
    )""",
    "CREATE INDEX responses_ts ON responses (ts)",
])

VERSION = len(MIGRATIONS)


def statements(dialect: str, version: int) -> list[str]:
    """Migration ``version`` (1-based) in ``dialect``'s types."""
    t = TYPES[dialect]
    return [s.format(**t) for s in MIGRATIONS[version - 1]]
