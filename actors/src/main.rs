//! The `qrank` binary: parse the command line, run the command, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

mod actors;
mod cli;
mod commands;
mod config;
mod evaluate;
mod load;
mod models;
mod output;
mod pipeline;
mod prepared;
mod service;
mod source;

use cli::{Cli, Command};

/// Exit codes, as documented in `qrank --help`.
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const SKIPPED_SOME: u8 = 2;
    pub const USAGE: u8 = 64;
    /// Stopped by Ctrl-C (128 + SIGINT, as a shell reports it).
    pub const INTERRUPTED: u8 = 130;
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { exit::USAGE } else { exit::OK };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Command::Rank(args) => commands::rank(args),
        Command::Fit(args) => commands::fit(args),
        Command::Eval(args) => evaluate::eval(args),
        Command::Compare(args) => commands::compare(args),
        Command::Serve(args) => service::run::serve(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("qrank: error: {}", error_chain(&e));
            ExitCode::from(
                e.downcast_ref::<cli::UsageError>()
                    .map_or(exit::FAILED, |_| exit::USAGE),
            )
        }
    }
}

/// The error and its causes, joined by ": ", leaving out a cause whose text the message before
/// it already contains (object_store and others repeat their source in their own message).
fn error_chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if !text.contains(&message) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&message);
        }
    }
    text
}
