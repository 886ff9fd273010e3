-- The device registry: one row per device id ever enrolled.
--
-- device_id   the id bytes (1 to 32, `DeviceId::as_bytes`);
-- public_key  the device's P-256 key, uncompressed SEC1 (65 bytes,
--             `PublicKey::as_bytes`, read back with
--             `PublicKey::from_sec1_uncompressed`);
-- enrolled_at when the current key was enrolled (or replaced);
-- revoked_at  when the device was revoked: a revoked row is never looked up
--             and never enrolled again (its id stays taken).
CREATE TABLE devices (
    device_id   bytea       PRIMARY KEY CHECK (octet_length(device_id) BETWEEN 1 AND 32),
    public_key  bytea       NOT NULL CHECK (octet_length(public_key) = 65),
    enrolled_at timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
