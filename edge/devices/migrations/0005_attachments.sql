-- Devices: photos and signatures that travel with device events.
--
-- A terminal sends a photo of the goods at inspection (拍照验货) or the deliverer's signature (电子签收) as
-- numbered chunks, each its own `evt/attachment` event. Chunks wait in attachment_chunks until all have come:
-- then the file is checked (size, sha256, type), written under <data_dir>/attachments/ and only then gets its
-- row in attachments. A refused upload keeps its reason (so a later chunk of it hears the same) and no bytes.

-- A file that arrived whole and passed every check. Its bytes are <data_dir>/attachments/<sha256[:2]>/<sha256>.
CREATE TABLE attachments (
    id          INTEGER PRIMARY KEY,
    device      TEXT NOT NULL,
    attachment  TEXT NOT NULL,          -- the terminal's own id for the file, unique per device
    purpose     TEXT NOT NULL CHECK (purpose IN ('photo', 'signature')),
    ref_kind    TEXT NOT NULL CHECK (ref_kind IN ('draft', 'asn', 'receipt')),
    ref         TEXT NOT NULL,          -- receipt draft id, ASN id, or receipt document id, as the terminal sent
    sha256      TEXT NOT NULL,
    size        INTEGER NOT NULL CHECK (size > 0),
    mime        TEXT NOT NULL,          -- sniffed from the bytes: image/jpeg, image/png, image/svg+xml
    taken_at    TEXT NOT NULL,          -- the event's ts on the terminal (RFC 3339)
    stored_at   TEXT NOT NULL,
    UNIQUE (device, attachment)
);
CREATE INDEX attachments_by_ref ON attachments(ref_kind, ref);
CREATE INDEX attachments_by_sha256 ON attachments(sha256);

-- One transfer of a file in chunks: open while chunks come in, then stored or refused (with the reason).
CREATE TABLE attachment_uploads (
    id             INTEGER PRIMARY KEY,
    device         TEXT NOT NULL,
    attachment     TEXT NOT NULL,
    purpose        TEXT NOT NULL,
    ref_kind       TEXT NOT NULL,
    ref            TEXT NOT NULL,
    chunk_count    INTEGER NOT NULL,
    size           INTEGER NOT NULL,
    sha256         TEXT NOT NULL,
    taken_at       TEXT NOT NULL,
    started_at     TEXT NOT NULL,       -- when its first chunk reached the box
    state          TEXT NOT NULL CHECK (state IN ('open', 'stored', 'refused')),
    code           TEXT,                -- refused: the stable reason code
    message        TEXT,
    message_en     TEXT,
    attachment_id  INTEGER REFERENCES attachments(id),
    UNIQUE (device, attachment)
);
CREATE INDEX attachment_uploads_by_state_and_start ON attachment_uploads(state, started_at);
CREATE INDEX attachment_uploads_open_by_device ON attachment_uploads(device, state);

-- Chunks of open uploads, deleted when the upload is stored or refused.
CREATE TABLE attachment_chunks (
    upload_id  INTEGER NOT NULL REFERENCES attachment_uploads(id),
    seq        INTEGER NOT NULL,
    data       BLOB NOT NULL,
    PRIMARY KEY (upload_id, seq)
) WITHOUT ROWID;
