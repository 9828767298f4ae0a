"""Versioned schema migrations, one entry per version and backend dialect.

A migration is never edited once released: add a new version instead. ``Store.migrate()`` applies
every version above the database's, each in its own transaction, and records it in
``schema_version``.
"""

from __future__ import annotations

MIGRATIONS: dict[int, dict[str, list[str]]] = {
    1: {
        "sqlite": [
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
            """CREATE TABLE batches (
                id TEXT PRIMARY KEY, channel TEXT NOT NULL, source TEXT NOT NULL,
                created_at TEXT NOT NULL,
                accepted INTEGER, duplicates INTEGER, rejected INTEGER)""",
            """CREATE TABLE cases (
                id TEXT PRIMARY KEY,
                url TEXT NOT NULL,
                canonical_url TEXT NOT NULL,
                host TEXT NOT NULL,
                domain TEXT NOT NULL,
                state TEXT NOT NULL,
                state_reason TEXT,
                retry_at TEXT,
                attempts INTEGER NOT NULL DEFAULT 0,
                parked_from TEXT,
                parked_stage TEXT,
                lease_owner TEXT,
                lease_until TEXT,
                is_open INTEGER NOT NULL DEFAULT 1,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL)""",
            # One open case per canonical URL: a re-report links to it.
            "CREATE UNIQUE INDEX cases_open_url ON cases(canonical_url) WHERE is_open = 1",
            "CREATE INDEX cases_state ON cases(state, updated_at)",
            "CREATE INDEX cases_lease ON cases(lease_owner) WHERE lease_owner IS NOT NULL",
            """CREATE TABLE reports (
                id INTEGER PRIMARY KEY,
                case_id TEXT NOT NULL REFERENCES cases(id) ON DELETE CASCADE,
                batch_id TEXT NOT NULL REFERENCES batches(id),
                channel TEXT NOT NULL,
                received_at TEXT NOT NULL,
                raw_url TEXT NOT NULL,
                metadata TEXT,
                duplicate INTEGER NOT NULL,
                line INTEGER)""",
            "CREATE INDEX reports_case ON reports(case_id)",
            """CREATE TABLE items (
                id INTEGER PRIMARY KEY,
                case_id TEXT NOT NULL REFERENCES cases(id) ON DELETE CASCADE,
                url TEXT NOT NULL,
                kind TEXT NOT NULL,
                status INTEGER, content_type TEXT, size INTEGER, final_url TEXT, error TEXT,
                hashes TEXT, matches TEXT,
                created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
                UNIQUE (case_id, url))""",
            """CREATE TABLE events (
                id INTEGER PRIMARY KEY,
                case_id TEXT NOT NULL REFERENCES cases(id) ON DELETE CASCADE,
                at TEXT NOT NULL, stage TEXT NOT NULL, actor TEXT NOT NULL,
                action TEXT NOT NULL, detail TEXT)""",
            "CREATE INDEX events_case ON events(case_id, id)",
            # The trail is append-only: the database refuses edits (deletion is for retention).
            """CREATE TRIGGER events_append_only BEFORE UPDATE ON events
               BEGIN SELECT RAISE(ABORT, 'events are append-only'); END""",
            """CREATE TABLE case_data (
                case_id TEXT NOT NULL REFERENCES cases(id) ON DELETE CASCADE,
                key TEXT NOT NULL, value TEXT NOT NULL,
                PRIMARY KEY (case_id, key))""",
            """CREATE TABLE outbox (
                id TEXT PRIMARY KEY,
                case_id TEXT REFERENCES cases(id) ON DELETE SET NULL,
                created_at TEXT NOT NULL,
                payload TEXT NOT NULL)""",
        ],
    },
    2: {
        "sqlite": [
            # Known-hash lists. Entries are confidential: never logged, never exported in full.
            """CREATE TABLE hashlists (
                name TEXT PRIMARY KEY,
                source TEXT,
                trust TEXT NOT NULL,
                negative INTEGER NOT NULL,
                thresholds TEXT NOT NULL,
                entries INTEGER NOT NULL,
                imported_at TEXT NOT NULL)""",
            """CREATE TABLE hashlist_entries (
                id INTEGER PRIMARY KEY,
                list TEXT NOT NULL REFERENCES hashlists(name) ON DELETE CASCADE,
                hash_type TEXT NOT NULL,
                hash TEXT NOT NULL,
                category TEXT NOT NULL,
                label TEXT,
                source TEXT)""",
            "CREATE INDEX hashlist_entries_list ON hashlist_entries(list)",
            # Small engine-wide counters, e.g. the hash-list generation that tells running
            # matchers to reload.
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        ],
    },
    3: {
        "sqlite": [
            # Lookup results (DNS, RDAP) with an expiry, keyed by namespace and key.
            """CREATE TABLE cache (
                namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
                expires_at TEXT NOT NULL, PRIMARY KEY (namespace, key))""",
            # The hotline's own contacts book: it wins over every lookup.
            """CREATE TABLE contacts (
                id INTEGER PRIMARY KEY,
                match_kind TEXT NOT NULL,
                match_value TEXT NOT NULL,
                scope TEXT NOT NULL,
                channel TEXT NOT NULL,
                address TEXT NOT NULL,
                priority INTEGER NOT NULL DEFAULT 0,
                note TEXT,
                created_at TEXT NOT NULL)""",
            "CREATE INDEX contacts_match ON contacts(match_kind, match_value)",
            # Addresses that bounced or failed permanently rank lower in the next resolution.
            """CREATE TABLE contact_health (
                address TEXT PRIMARY KEY, failures INTEGER NOT NULL,
                last_error TEXT, updated_at TEXT NOT NULL)""",
        ],
    },
    4: {
        "sqlite": [
            # Aggregated notices. Actions to send are rows of ``outbox`` (written with the
            # notify stage's state change); a notice groups the actions of one recipient.
            """CREATE TABLE notices (
                id TEXT PRIMARY KEY,
                recipient TEXT NOT NULL,
                channel TEXT NOT NULL,
                recipient_kind TEXT NOT NULL,
                country TEXT,
                language TEXT NOT NULL,
                state TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                idempotency_key TEXT NOT NULL UNIQUE,
                url_count INTEGER NOT NULL,
                next_attempt_at TEXT,
                lease_owner TEXT,
                lease_until TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                sent_at TEXT,
                error TEXT,
                receipt TEXT)""",
            "CREATE INDEX notices_due ON notices(state, next_attempt_at)",
            "CREATE INDEX notices_lease ON notices(lease_owner) WHERE lease_owner IS NOT NULL",
            # The notice an outbox action went into (NULL: not yet aggregated). The partial
            # index keeps "what is waiting" cheap however long the outbox grows.
            "ALTER TABLE outbox ADD COLUMN notice_id TEXT",
            "CREATE INDEX outbox_pending ON outbox(created_at) WHERE notice_id IS NULL",
            "CREATE INDEX outbox_notice ON outbox(notice_id) WHERE notice_id IS NOT NULL",
        ],
    },
    5: {
        "sqlite": [
            # Chat-reporter data, apart from case data. ``sealed`` is AES-GCM ciphertext under
            # the record's own data key; the key (itself sealed by the master key, which never
            # enters the database) lives in ``reporter_keys``: deleting it shreds the record.
            """CREATE TABLE reporters (
                id TEXT PRIMARY KEY,
                report_id INTEGER NOT NULL REFERENCES reports(id) ON DELETE CASCADE,
                case_id TEXT NOT NULL,
                app TEXT,
                phone_mac TEXT,
                username_mac TEXT,
                sealed BLOB NOT NULL,
                contact_police INTEGER NOT NULL DEFAULT 0,
                restricted INTEGER NOT NULL DEFAULT 0,
                created_at TEXT NOT NULL,
                feedback_sent_at TEXT)""",
            "CREATE INDEX reporters_phone ON reporters(phone_mac)",
            "CREATE INDEX reporters_username ON reporters(username_mac)",
            "CREATE INDEX reporters_case ON reporters(case_id)",
            """CREATE TABLE reporter_keys (
                reporter_id TEXT PRIMARY KEY REFERENCES reporters(id) ON DELETE CASCADE,
                wrapped_key BLOB NOT NULL)""",
            # Who viewed, exported, changed or erased what: never the personal values.
            """CREATE TABLE audit (
                id INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL,
                action TEXT NOT NULL, object TEXT NOT NULL, detail TEXT)""",
            """CREATE TRIGGER audit_append_only BEFORE UPDATE ON audit
               BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
            "ALTER TABLE cases ADD COLUMN anonymised_at TEXT",
        ],
    },
}

