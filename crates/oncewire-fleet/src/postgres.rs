//! The device registry on PostgreSQL: [`PgRegistry`], an
//! [`oncewire_http::store::DeviceRegistry`] shared by every server of a
//! fleet.
//!
//! # Why `tokio-postgres` rather than `sqlx`
//!
//! - It is small: the wire protocol and a client, no query macros, no
//!   compile-time database (sqlx's checked queries need a live server or an
//!   offline cache at build time, for four statements).
//! - Its [`tokio_postgres::Client`] is pipelined and shared by `&self`
//!   across tasks: concurrent lookups on one connection are sent without
//!   waiting for each other's answers, so a handful of connections serve a
//!   whole server without a pool crate.
//!
//! # Connections
//!
//! [`PgRegistry::connect`] opens `pool` connections, used round-robin; each
//! connection's task is spawned on tokio. A lookup shares its connection
//! with other lookups (a read lock on it); an enrollment, which needs a
//! transaction of its own, holds its connection alone (the write lock) for
//! that transaction. A connection found closed is opened again at its next
//! use; while the server cannot be reached, every call fails with
//! [`Error::Storage`] (never a panic, never an answer made up). A call that
//! takes longer than 10 s (connecting and migrating: 60 s) fails with
//! `Storage` too, and an enrollment cut short is rolled back, unless its
//! commit had already reached the server: enrolling again then answers
//! `Unchanged`.
//!
//! # Schema and migrations
//!
//! The migrations are checked in (`migrations/*.sql`), embedded in the
//! binary, and applied by [`PgRegistry::migrate`] in one transaction, under
//! an advisory lock (servers starting together migrate once), each version
//! recorded in the `oncewire_migrations` table. [`PgRegistry::connect_in_schema`]
//! puts the tables in a schema of their own (created if missing), which is
//! how the tests give each store a fresh, empty registry.
//!
//! # Enrollment and revocation policy
//!
//! - [`DeviceRegistry::enroll`] runs in a transaction: it inserts the device
//!   if its id is new (`INSERT ... ON CONFLICT DO NOTHING`), and otherwise
//!   locks the enrolled row (`SELECT ... FOR UPDATE`), decides with
//!   [`EnrolledDevice::admit`] exactly as the in-memory registry does, and
//!   writes the new key only on [`Admission::Replaced`]. Two servers
//!   enrolling one id at once are serialised by the row lock (or by the
//!   unique index, for a new id): under [`ReEnrollment::Refuse`] exactly one
//!   key wins.
//! - [`PgRegistry::revoke`] marks the device revoked. A revoked device's key
//!   is no longer returned by [`DeviceRegistry::device_key`], so its
//!   handshakes and token requests fail with `UnknownDevice`; and its id is
//!   never enrolled again, whatever the policy and whatever the key (even
//!   the revoked one): [`Error::AlreadyEnrolled`]. Revocation is final:
//!   whoever holds a revoked device's key, or learns its id, cannot come
//!   back under it. A device that must return enrolls under a new id.

use oncewire::device::{Admission, EnrolledDevice, ReEnrollment};
use oncewire::{DeviceId, Error, PublicKey};
use oncewire_http::store::DeviceRegistry;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::RwLock;
use tokio_postgres::{Client, NoTls, Statement};

/// The checked-in migrations, in order: (version, name, SQL).
const MIGRATIONS: &[(i32, &str, &str)] = &[(1, "0001_devices", include_str!("../migrations/0001_devices.sql"))];

/// The advisory lock key that serialises migrations (any fixed number:
/// "oncewire" in ASCII).
const MIGRATION_LOCK: i64 = 0x6f6e_6365_7769_7265;

/// How long one lookup, enrollment or revocation may take, waiting for a
/// connection included, before it fails with [`Error::Storage`] (a server
/// that hangs is refused like one that is gone).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long connecting, or migrating (which waits for other servers'
/// migrations), may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// `call`, or [`Error::Storage`] once `limit` has passed (the call is then
/// dropped: an open transaction is rolled back).
async fn bounded<T>(limit: Duration, call: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
        tracing::warn!(?limit, "postgres: call timed out");
        Err(Error::Storage)
    })
}

const LOOKUP: &str = "SELECT public_key FROM devices WHERE device_id = $1 AND revoked_at IS NULL";

/// One connection and its prepared lookup.
struct Conn {
    client: Client,
    /// None until the table exists (before the first [`PgRegistry::migrate`]):
    /// the lookup is then sent unprepared, and fails with `Storage`.
    lookup: Option<Statement>,
}

/// The device registry in PostgreSQL (see the [module docs](self)).
pub struct PgRegistry {
    conninfo: String,
    schema: Option<String>,
    conns: Vec<RwLock<Conn>>,
    next: AtomicUsize,
}

impl core::fmt::Debug for PgRegistry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The conninfo may hold a password: not printed.
        f.debug_struct("PgRegistry").field("schema", &self.schema).field("pool", &self.conns.len()).finish()
    }
}

/// Logs a database error and reports it as [`Error::Storage`].
fn storage(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |e| {
        tracing::warn!(error = %e, "postgres: {what}");
        Error::Storage
    }
}

/// True for a name usable as an unquoted schema identifier: 1 to 63 of
/// `[a-z0-9_]`, not starting with a digit.
fn valid_schema(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
        && b.first().is_some_and(|c| !c.is_ascii_digit())
}

/// Opens one connection (its task spawned on tokio), sets its schema, and
/// prepares the lookup (`create` also creates the schema).
async fn open(conninfo: &str, schema: Option<&str>, create: bool) -> Result<Conn, Error> {
    let (client, connection) = tokio_postgres::connect(conninfo, NoTls).await.map_err(storage("connect"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "postgres: connection closed");
        }
    });
    if let Some(s) = schema {
        // `s` is checked by `valid_schema`: safe to splice, quoted anyway.
        if create {
            // `IF NOT EXISTS` alone races (two servers creating one schema:
            // a unique violation): serialised by the migration lock.
            client
                .batch_execute(&format!(
                    "BEGIN; SELECT pg_advisory_xact_lock({MIGRATION_LOCK}); \
                     CREATE SCHEMA IF NOT EXISTS \"{s}\"; COMMIT"
                ))
                .await
                .map_err(storage("schema"))?;
        }
        client.batch_execute(&format!("SET search_path TO \"{s}\"")).await.map_err(storage("search_path"))?;
    }
    let lookup = prepare_lookup(&client).await?;
    Ok(Conn { client, lookup })
}

/// The lookup, prepared, if the table exists.
async fn prepare_lookup(client: &Client) -> Result<Option<Statement>, Error> {
    match client.prepare(LOOKUP).await {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => Ok(None),
        Err(e) => Err(storage("prepare")(e)),
    }
}

impl PgRegistry {
    /// Connects `pool` connections (at least one) to the server named by
    /// `conninfo` (a `tokio-postgres` conninfo string or URL), with the
    /// tables in the connection's default `search_path`. Call
    /// [`Self::migrate`] before use.
    ///
    /// # Errors
    /// [`Error::Storage`] if a connection cannot be opened.
    pub async fn connect(conninfo: &str, pool: usize) -> Result<Self, Error> {
        bounded(SETUP_TIMEOUT, Self::open_pool(conninfo, None, pool)).await
    }

    /// Like [`Self::connect`], with the tables in `schema` (created if
    /// missing; every connection's `search_path` set to it): registries in
    /// different schemas of one database share nothing.
    ///
    /// # Errors
    /// [`Error::Misuse`] if `schema` is not 1 to 63 of `[a-z0-9_]` (not
    /// starting with a digit); [`Error::Storage`] if a connection cannot be
    /// opened or the schema created.
    pub async fn connect_in_schema(conninfo: &str, schema: &str, pool: usize) -> Result<Self, Error> {
        if !valid_schema(schema) {
            return Err(Error::Misuse);
        }
        bounded(SETUP_TIMEOUT, Self::open_pool(conninfo, Some(schema), pool)).await
    }

    async fn open_pool(conninfo: &str, schema: Option<&str>, pool: usize) -> Result<Self, Error> {
        let mut conns = Vec::with_capacity(pool.max(1));
        for i in 0..pool.max(1) {
            conns.push(RwLock::new(open(conninfo, schema, i == 0).await?));
        }
        Ok(Self { conninfo: conninfo.to_owned(), schema: schema.map(str::to_owned), conns, next: AtomicUsize::new(0) })
    }

    /// The next connection, round-robin.
    fn pick(&self) -> Result<&RwLock<Conn>, Error> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let i = i.checked_rem(self.conns.len()).ok_or(Error::Storage)?;
        self.conns.get(i).ok_or(Error::Storage)
    }

    /// Opens `conn` again if its connection closed (the write lock held).
    async fn revive(&self, conn: &mut Conn) -> Result<(), Error> {
        if conn.client.is_closed() {
            *conn = open(&self.conninfo, self.schema.as_deref(), false).await?;
        }
        Ok(())
    }

    /// A connection for a lookup: shared with other lookups.
    async fn read(&self) -> Result<tokio::sync::RwLockReadGuard<'_, Conn>, Error> {
        let lock = self.pick()?;
        {
            let conn = lock.read().await;
            if !conn.client.is_closed() {
                return Ok(conn);
            }
        }
        let mut conn = lock.write().await;
        self.revive(&mut conn).await?;
        Ok(conn.downgrade())
    }

    /// A connection for a transaction: held alone.
    async fn write(&self) -> Result<tokio::sync::RwLockWriteGuard<'_, Conn>, Error> {
        let mut conn = self.pick()?.write().await;
        self.revive(&mut conn).await?;
        Ok(conn)
    }

    /// Applies the checked-in migrations not applied yet, in one
    /// transaction (all or none), recording each version in
    /// `oncewire_migrations`. Idempotent; safe to run from several servers
    /// at once (an advisory lock serialises them). Returns how many were
    /// applied.
    ///
    /// # Errors
    /// [`Error::Storage`] if the database refuses (nothing is applied then).
    pub async fn migrate(&self) -> Result<usize, Error> {
        bounded(SETUP_TIMEOUT, self.migrate_now()).await
    }

    async fn migrate_now(&self) -> Result<usize, Error> {
        let mut conn = self.write().await?;
        let tx = conn.client.transaction().await.map_err(storage("begin"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(storage("lock"))?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS oncewire_migrations (
                 version    integer     PRIMARY KEY,
                 name       text        NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(storage("migrations table"))?;
        let mut applied = 0usize;
        for (version, name, sql) in MIGRATIONS {
            let done = tx
                .query_opt("SELECT 1 FROM oncewire_migrations WHERE version = $1", &[version])
                .await
                .map_err(storage("migration lookup"))?;
            if done.is_some() {
                continue;
            }
            tx.batch_execute(sql).await.map_err(storage("migration"))?;
            tx.execute("INSERT INTO oncewire_migrations (version, name) VALUES ($1, $2)", &[version, name])
                .await
                .map_err(storage("migration record"))?;
            applied = applied.saturating_add(1);
        }
        tx.commit().await.map_err(storage("commit"))?;
        drop(conn);
        // Every connection's lookup, prepared against the table now there.
        for lock in &self.conns {
            let mut conn = lock.write().await;
            self.revive(&mut conn).await?;
            conn.lookup = Some(conn.client.prepare(LOOKUP).await.map_err(storage("prepare"))?);
        }
        tracing::info!(applied, "postgres: migrations");
        Ok(applied)
    }

    /// Revokes `device` (see the [module docs](self) for the policy): its
    /// key is no longer looked up, and its id is never enrolled again.
    /// Returns true if an enrolled device was revoked, false if `device` is
    /// not enrolled or already revoked (an unknown id is not recorded).
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub async fn revoke(&self, device: &DeviceId) -> Result<bool, Error> {
        bounded(CALL_TIMEOUT, self.revoke_now(device)).await
    }

    async fn revoke_now(&self, device: &DeviceId) -> Result<bool, Error> {
        let conn = self.read().await?;
        let n = conn
            .client
            .execute(
                "UPDATE devices SET revoked_at = now() WHERE device_id = $1 AND revoked_at IS NULL",
                &[&device.as_bytes()],
            )
            .await
            .map_err(storage("revoke"))?;
        Ok(n > 0)
    }
}

/// A stored key, read back; a row that is not a key is a storage fault.
fn key_of(bytes: &[u8]) -> Result<PublicKey, Error> {
    PublicKey::from_sec1_uncompressed(bytes).map_err(|_| {
        tracing::warn!("postgres: a stored device key is not an uncompressed SEC1 point");
        Error::Storage
    })
}

impl PgRegistry {
    async fn lookup(&self, device: &DeviceId) -> Result<Option<PublicKey>, Error> {
        let conn = self.read().await?;
        let id = device.as_bytes();
        let row = match &conn.lookup {
            Some(statement) => conn.client.query_opt(statement, &[&id]).await,
            None => conn.client.query_opt(LOOKUP, &[&id]).await,
        }
        .map_err(storage("lookup"))?;
        match row {
            None => Ok(None),
            Some(row) => {
                let bytes: &[u8] = row.try_get(0).map_err(storage("lookup column"))?;
                key_of(bytes).map(Some)
            }
        }
    }

    async fn enroll_now(&self, device: EnrolledDevice, policy: ReEnrollment) -> Result<Admission, Error> {
        let id = device.device.as_bytes();
        let key: &[u8] = device.public_key.as_bytes();
        let mut conn = self.write().await?;
        let tx = conn.client.transaction().await.map_err(storage("begin"))?;
        // A new id: inserted, and `admit(None, _)` is `New` whatever the
        // policy. A concurrent insert of the same id waits here for the
        // other transaction, then inserts nothing.
        let inserted = tx
            .execute(
                "INSERT INTO devices (device_id, public_key) VALUES ($1, $2) ON CONFLICT (device_id) DO NOTHING",
                &[&id, &key],
            )
            .await
            .map_err(storage("enroll insert"))?;
        if inserted > 0 {
            tx.commit().await.map_err(storage("commit"))?;
            return device.admit(None, policy);
        }
        let row = tx
            .query_opt("SELECT public_key, revoked_at IS NOT NULL FROM devices WHERE device_id = $1 FOR UPDATE", &[&id])
            .await
            .map_err(storage("enroll lookup"))?
            .ok_or(Error::Storage)?;
        let revoked: bool = row.try_get(1).map_err(storage("enroll column"))?;
        if revoked {
            // Dropping `tx` rolls back (nothing was written).
            return Err(Error::AlreadyEnrolled);
        }
        let enrolled = key_of(row.try_get(0).map_err(storage("enroll column"))?)?;
        let admission = device.admit(Some(&enrolled), policy)?;
        if admission == Admission::Replaced {
            tx.execute("UPDATE devices SET public_key = $2, enrolled_at = now() WHERE device_id = $1", &[&id, &key])
                .await
                .map_err(storage("enroll replace"))?;
        }
        tx.commit().await.map_err(storage("commit"))?;
        Ok(admission)
    }
}

impl DeviceRegistry for PgRegistry {
    async fn device_key(&self, device: &DeviceId) -> Result<Option<PublicKey>, Error> {
        bounded(CALL_TIMEOUT, self.lookup(device)).await
    }

    async fn enroll(&self, device: EnrolledDevice, policy: ReEnrollment) -> Result<Admission, Error> {
        bounded(CALL_TIMEOUT, self.enroll_now(device, policy)).await
    }
}
