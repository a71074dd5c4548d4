//! A Postgres schema of its own per test, on the server named by `DATABASE_URL` (which
//! `make test` makes sure exists). Dropped when the test ends.

use sqlx::{AnyConnection, Connection};

pub struct PgSchema {
    base: String,
    pub schema: String,
}

impl PgSchema {
    pub async fn create() -> PgSchema {
        let base = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
            panic!(
                "DATABASE_URL is not set: run the tests with `make test` (it starts or finds a Postgres server), \
                 or set DATABASE_URL=postgres://user@host:port/db"
            )
        });
        sqlx::any::install_default_drivers();
        let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
        let mut conn = AnyConnection::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to Postgres at DATABASE_URL: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut conn)
            .await
            .expect("create schema");
        drop_stale_schemas(&mut conn).await;
        PgSchema { base, schema }
    }

    /// A URL whose connections use this schema only.
    pub fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!(
            "{}{sep}options=-c%20search_path%3D{}",
            self.base, self.schema
        )
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (base, schema) = (self.base.clone(), self.schema.clone());
        // Not joined: blocking here would stall the test's runtime, which may still have to
        // close the connections that hold locks in this schema. A schema whose drop did not
        // finish (the process ended first) is removed by a later run's `drop_stale_schemas`.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(mut conn) = AnyConnection::connect(&base).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP SCHEMA IF EXISTS {schema} CASCADE"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        });
    }
}

/// Test schemas are named `t_<uuid v7>`; the UUID's first 48 bits are its creation time in
/// ms. Drops those older than an hour, left behind by runs that ended before cleaning up.
async fn drop_stale_schemas(conn: &mut AnyConnection) {
    let Ok(rows) = sqlx::query("SELECT nspname FROM pg_namespace WHERE nspname LIKE 't\\_%'")
        .fetch_all(&mut *conn)
        .await
    else {
        return;
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    for row in rows {
        let Ok(name) = sqlx::Row::try_get::<String, _>(&row, 0) else {
            continue;
        };
        let created = name
            .get(2..14)
            .and_then(|hex| u64::from_str_radix(hex, 16).ok());
        if name.len() == 34 && created.is_some_and(|ms| ms + 3_600_000 < now_ms) {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {name} CASCADE"
            )))
            .execute(&mut *conn)
            .await;
        }
    }
}
