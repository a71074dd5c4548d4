//! The few lines every service binary's `main` shares: reading `--config`, binding a
//! listener with an error that names the setting, and turning SIGINT/SIGTERM into a
//! cancellation.

use std::{net::SocketAddr, path::PathBuf};

use serde::{Serialize, de::DeserializeOwned};
use tokio_util::sync::CancellationToken;

use crate::logging::{self, LogConfig};

/// A service's whole configuration.
pub trait ServiceConfig: Serialize + DeserializeOwned + Default {
    fn log(&self) -> &LogConfig;
}

/// The start of every service's `main`: parses `args` (`--config FILE`, `--help`), loads the
/// configuration from defaults, the file and `env`, installs logging and reports
/// `AUDITSTREAM_*` variables that named no setting. `None` means help was printed.
pub fn load_config<C: ServiceConfig>(
    service: &str,
    args: impl IntoIterator<Item = String>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Option<C>, String> {
    let usage = format!(
        "usage: {service} [--config FILE]\n\
         Configuration: defaults < FILE (TOML) < AUDITSTREAM_* environment variables (see README)."
    );
    let file = match parse_args(args).map_err(|e| format!("{e}\n{usage}"))? {
        Args::Help => {
            println!("{usage}");
            return Ok(None);
        }
        Args::Run { config } => config,
    };
    let env: Vec<(String, String)> = env.into_iter().collect();
    let otlp = env
        .iter()
        .find(|(k, _)| k == crate::traces::ENDPOINT_VAR)
        .map(|(_, v)| v.clone());
    let loaded = crate::load::<C>(file.as_deref(), env).map_err(|e| e.to_string())?;
    logging::init_with_traces(
        loaded.config.log().format,
        &loaded.config.log().filter,
        service,
        otlp.as_deref(),
    )?;
    for var in loaded.ignored_env {
        tracing::warn!(
            var,
            service,
            "environment variable names no setting of this service; ignored"
        );
    }
    Ok(Some(loaded.config))
}

/// What the command line asked for.
pub enum Args {
    Run { config: Option<PathBuf> },
    Help,
}

/// Parses `[--config FILE]` (or `-c`), and `--help`.
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut config = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => config = Some(args.next().ok_or("--config needs a file")?.into()),
            "--help" | "-h" => return Ok(Args::Help),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args::Run { config })
}

/// Binds `addr`; the error names the setting so an operator knows which one to change.
pub async fn bind(addr: SocketAddr, setting: &str) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {setting} {addr} (is the port in use?): {e}"))
}

/// Cancels `shutdown` on the first SIGINT or SIGTERM.
pub async fn cancel_on_signal(shutdown: CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("can install a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutdown requested");
    shutdown.cancel();
}

/// Runs `serving` (the servers, which stop accepting when `shutdown` fires and then wait
/// for open connections) but gives up `grace` after shutdown was requested: long-lived
/// clients (gRPC channels, HTTP keep-alive) must not hold a pod past its termination
/// period. Returns `None` when the grace period cut the wait short.
pub async fn serve_with_grace<T>(
    serving: impl std::future::Future<Output = T>,
    shutdown: &CancellationToken,
    grace: std::time::Duration,
) -> Option<T> {
    tokio::select! {
        done = serving => Some(done),
        _ = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(?grace, "connections still open after the shutdown grace period; closing them");
            None
        }
    }
}

/// A whole service `main`: loads `C` (see [`load_config`]), cancels the token on SIGINT or
/// SIGTERM, hands freed memory back periodically ([`crate::memory`]), and runs `start`. Errors are printed as `<service>: <error>` with exit code 1.
pub async fn service_main<C, F, Fut>(service: &str, start: F) -> std::process::ExitCode
where
    C: ServiceConfig,
    F: FnOnce(C, CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let config = match load_config::<C>(service, std::env::args().skip(1), std::env::vars()) {
        Ok(Some(config)) => config,
        Ok(None) => return std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{service}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    tokio::spawn(crate::memory::trim_periodically());
    let result = start(config, shutdown).await;
    crate::traces::flush();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{service}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
