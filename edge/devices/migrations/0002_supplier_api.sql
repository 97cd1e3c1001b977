-- Devices: supplier API keys and ASN connector sources.

-- Per-supplier API keys (供应商接口密钥) for /api/v1/supplier/...: the key is shown once, the box keeps the
-- SHA-256 of its secret (the secret is 256 random bits, so a slow password hash would buy nothing and cost
-- every request). A key rotated with a grace period keeps working until expires_at; a revoked one stops.
CREATE TABLE supplier_api_keys (
    key_id         TEXT PRIMARY KEY CHECK (length(key_id) = 12 AND key_id NOT GLOB '*[^a-z0-9]*'),
    supplier       TEXT NOT NULL REFERENCES suppliers(id),
    secret_sha256  TEXT NOT NULL CHECK (length(secret_sha256) = 64),
    scopes         TEXT NOT NULL,          -- space-separated supplier permissions
    label          TEXT,
    created_at     TEXT NOT NULL,
    created_by     TEXT NOT NULL,
    expires_at     TEXT,                   -- set when the key is rotated with a grace period
    revoked_at     TEXT,
    replaced_by    TEXT REFERENCES supplier_api_keys(key_id)
);
CREATE INDEX supplier_api_keys_by_supplier ON supplier_api_keys(supplier);

-- MQTT devices of kind `supplier` and the supplier each one speaks for (evt/asn).
CREATE TABLE supplier_devices (
    device     TEXT PRIMARY KEY REFERENCES devices(id),
    supplier   TEXT NOT NULL REFERENCES suppliers(id),
    linked_at  TEXT NOT NULL
);
CREATE INDEX supplier_devices_by_supplier ON supplier_devices(supplier);

-- Where each ASN revision came from (the connector source): the supplier API with a key (JSON or a connector
-- template) or a supplier device on the bus. Read with the ASN by the supplier and the staff.
CREATE TABLE asn_sources (
    supplier     TEXT NOT NULL,
    asn_id       TEXT NOT NULL,
    revision     INTEGER NOT NULL,
    channel      TEXT NOT NULL CHECK (channel IN ('http', 'import', 'mqtt')),
    template     TEXT,                   -- channel import: the connector template
    key_id       TEXT,                   -- channel http / import: the API key used
    device       TEXT,                   -- channel mqtt: the supplier device
    received_at  TEXT NOT NULL,
    PRIMARY KEY (supplier, asn_id, revision)
);
