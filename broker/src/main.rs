//! `switchboard`: CLI -> config -> tracing -> node.

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use switchboard_broker::config::{Config, ConfigArgs};

/// Switchboard: real-time customer-service chat backend.
#[derive(Parser)]
#[command(name = "switchboard", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    args: ConfigArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node (the default).
    Run(ConfigArgs),
    /// Print the embedded default configuration as TOML.
    PrintDefaultConfig,
    /// Cluster operations against a running node (status, drain, remove).
    #[command(subcommand)]
    Cluster(switchboard_broker::cli::ClusterCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::PrintDefaultConfig) => {
            print!("{}", Config::default_toml());
            return ExitCode::SUCCESS;
        }
        Some(Command::Cluster(command)) => {
            return match switchboard_broker::cli::run(command) {
                Ok(text) => {
                    println!("{}", text.trim_end());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("switchboard: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::Run(args)) => args,
        None => cli.args,
    };
    let config = match Config::load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log));
    tracing_subscriber::fmt().with_env_filter(filter).with_target(false).init();
    let system = actix_rt::System::new();
    match system.block_on(switchboard_broker::node::run(config)) {
        Ok(()) => {
            // The node has shut down: the store's writer has stopped and the WAL is
            // synced. Leave without running C++ static destructors: a thread still
            // winding down (an arbiter dropping the last handle of the RocksDB) would
            // otherwise close it under them and abort ("pthread lock: Invalid
            // argument", SIGABRT, seen about once in 30 SIGTERMs in the tests).
            use std::io::Write;
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().flush();
            // SAFETY: _exit(2) ends the process at once; nothing here relies on
            // destructors or atexit handlers running.
            unsafe { libc::_exit(0) }
        }
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("switchboard: {e:#}");
            ExitCode::FAILURE
        }
    }
}
