-- Helios telemetry outbox: the one source of truth for its tables.
--
-- outbox/db.py applies this file to a new outbox and records SCHEMA_VERSION in
-- PRAGMA user_version; older outboxes are brought forward by the numbered
-- migrations in outbox/db.py. Every statement is idempotent.
--
-- Invariants (see CLAUDE.md):
--   * events is append-only for track calls. Ids are AUTOINCREMENT so that an id
--     is never reused after a purge: the seal cursor (meta 'sealed_through')
--     compares ids, and a reused id below it would be silently skipped.
--   * An event is pending while id > sealed_through. Sealing moves the cursor and
--     writes one heartbeat row; it never updates events.
--   * At most one heartbeat is pending at a time (partial unique index).
--   * Heartbeat status: 'pending' (sealed, not yet delivered) → 'sent' (a 2xx
--     answer), 'rejected' (a 4xx: kept for inspection, never retried), or
--     'local' (sealed in local mode: kept here, never sent).

CREATE TABLE IF NOT EXISTS events (
    id    INTEGER PRIMARY KEY AUTOINCREMENT,
    kind  TEXT    NOT NULL CHECK (kind IN ('api', 'command', 'ui')),
    name  TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    count INTEGER NOT NULL DEFAULT 1 CHECK (typeof(count) = 'integer' AND count >= 1),
    at    INTEGER NOT NULL CHECK (typeof(at) = 'integer')   -- unix seconds, UTC
);

CREATE TABLE IF NOT EXISTS heartbeats (
    id              TEXT    PRIMARY KEY,                     -- heartbeat_id, the idempotency key
    sequence        INTEGER NOT NULL UNIQUE CHECK (sequence >= 1),
    first_event_id  INTEGER NOT NULL,                        -- exclusive: the previous mark
    last_event_id   INTEGER NOT NULL,                        -- inclusive: this seal's mark
    period_start    TEXT    NOT NULL,                        -- ISO 8601 UTC, as in the payload
    period_end      TEXT    NOT NULL,
    payload         BLOB    NOT NULL,                        -- frozen bytes, sent byte for byte
    payload_sha256  TEXT    NOT NULL CHECK (length(payload_sha256) = 64),
    status          TEXT    NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'sent', 'rejected', 'local')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error      TEXT,
    receipt         TEXT,                                    -- the receiver's answer, JSON
    sealed_at       INTEGER NOT NULL,                        -- unix seconds
    last_attempt_at INTEGER,
    settled_at      INTEGER,                                 -- when it left 'pending'
    CHECK (last_event_id >= first_event_id),
    CHECK ((status = 'pending') = (settled_at IS NULL))
);

CREATE UNIQUE INDEX IF NOT EXISTS heartbeats_one_pending
    ON heartbeats (status) WHERE status = 'pending';

-- Small typed facts about this outbox: instance_id, sealed_through,
-- last_sequence, last_seal_at, retired_endpoint, created_at, ...
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value NOT NULL                                           -- no affinity: ints stay ints, text stays text
) WITHOUT ROWID;

-- What could not be counted, by reason. `pending` goes into the next heartbeat
-- and is zeroed by its seal; `total` is the lifetime figure `outbox status` shows.
CREATE TABLE IF NOT EXISTS dropped (
    reason  TEXT    PRIMARY KEY
                    CHECK (reason IN ('invalid_name', 'storage_error', 'over_capacity',
                                      'unknown_name')),
    pending INTEGER NOT NULL DEFAULT 0 CHECK (pending >= 0),
    total   INTEGER NOT NULL DEFAULT 0 CHECK (total >= 0)
) WITHOUT ROWID;

INSERT OR IGNORE INTO dropped (reason)
    VALUES ('invalid_name'), ('storage_error'), ('over_capacity'), ('unknown_name');

-- The Helios host app's settings table; telemetry owns the 'telemetry_enabled' key.
CREATE TABLE IF NOT EXISTS organization_settings (
    key        TEXT    PRIMARY KEY,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    CHECK (key <> 'telemetry_enabled' OR value IN ('true', 'false'))
) WITHOUT ROWID;

-- One worker per outbox: the holder renews its lease every cycle.
CREATE TABLE IF NOT EXISTS worker_lease (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    owner      TEXT    NOT NULL,                             -- "host:pid:token"
    pid        INTEGER NOT NULL,
    acquired_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
