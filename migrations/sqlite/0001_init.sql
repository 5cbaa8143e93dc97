-- 0001_init: the embedded ledger schema, the logical twin of the DynamoDB tables in
-- DESIGN §3. Ops tools read these tables directly: column names are the envelope's field
-- names, timestamps are RFC 3339 UTC text (recorded_at with fixed microseconds, so it sorts
-- as text), ids are lowercase hyphenated UUID text.

-- The event log. `position` is the rowid: the change-feed position, assigned in commit order
-- because SQLite has one writer at a time (events are never deleted, so it never goes back).
CREATE TABLE events (
    position        INTEGER PRIMARY KEY,
    event_id        TEXT    NOT NULL UNIQUE,
    stream_id       TEXT    NOT NULL,
    version         INTEGER NOT NULL CHECK (version >= 1),
    event_type      TEXT    NOT NULL,
    schema_version  INTEGER NOT NULL CHECK (schema_version >= 0),
    source          TEXT    NOT NULL CHECK (source IN ('crm', 'billing', 'system')),
    source_event_id TEXT    NOT NULL,
    correlation_id  TEXT    NOT NULL,
    causation_id    TEXT,
    occurred_at     TEXT    NOT NULL,
    recorded_at     TEXT    NOT NULL,
    payload         TEXT    NOT NULL CHECK (json_valid(payload)),
    -- optimistic concurrency: one event per (stream, version)
    UNIQUE (stream_id, version),
    -- idempotent append: one event per source event, whatever the redelivery
    UNIQUE (source, source_event_id)
) STRICT;

-- Audit queries: everything one inbound event caused, in recorded order.
CREATE INDEX events_by_correlation ON events (correlation_id, recorded_at, event_id);

-- Replay: the deterministic global order (recorded_at, event_id), from a point in time.
CREATE INDEX events_by_time ON events (recorded_at, event_id);

-- Projection state, keyed `<projection>#<key>`; `last_versions` maps each source stream to
-- the last version folded in, so applying an event twice or out of order is detectable.
CREATE TABLE views (
    pk            TEXT NOT NULL PRIMARY KEY,
    body          TEXT NOT NULL CHECK (json_valid(body)),
    last_versions TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(last_versions)),
    updated_at    TEXT NOT NULL
) STRICT;

-- Where a named consumer (projector, replay run) has got to in the change feed / global order.
CREATE TABLE checkpoints (
    name       TEXT NOT NULL PRIMARY KEY,
    position   TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;
