//! `auditctl`: parses arguments, runs one command against the config service and maps the
//! outcome to an exit code (0 success, 1 failure, 2 usage error; clap exits 2 itself).

use std::{io::Write, process::ExitCode};

use auditstream_cli::{Cli, CliError, run};
use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    let result = match run(cli, &mut out).await {
        Ok(()) => out.flush().map_err(CliError::from),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("auditctl: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
