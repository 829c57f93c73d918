//! `loadtest`: load generator for Switchboard, built on the client SDK.
//!
//! A run: parse flags ([`cli`]) -> read `GET /v1/node` and create a tenant, agents
//! and tokens through the admin API ([`admin`]) -> split the connections into jobs,
//! one per process, re-executing this binary as hidden `worker`s when one process
//! cannot hold them all ([`run`], [`worker`]) -> each job runs a scenario with
//! `switchboard_client` sessions ([`scenario`]), recording what every connection
//! received -> outcomes merge ([`job`]) -> delivery is verified ([`verify`]) -> a
//! table on stdout and every figure in `--json` ([`report`]).
//!
//! Exit status: 0 clean, 1 delivery verification failed, 2 could not run.

mod admin;
mod cli;
mod job;
mod net;
mod report;
mod run;
mod scenario;
mod stats;
mod verify;
mod worker;

use clap::Parser;
use std::process::ExitCode;
use std::time::Duration;

/// Raises the soft open-file limit to the hard limit; returns the soft limit now
/// in force.
fn raise_nofile_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
    let soft = limit.rlim_cur as u64;
    soft
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let nofile = raise_nofile_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadtest: error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let code = match cli.command {
        cli::Command::Worker => match runtime.block_on(worker::main()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("loadtest worker: error: {e:#}");
                ExitCode::from(2)
            }
        },
        command => match runtime.block_on(run::run(command, nofile)) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => {
                eprintln!("loadtest: delivery verification FAILED (see lost / duplicated / reordered / stream gaps / conflicting seqs)");
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("loadtest: error: {e:#}");
                ExitCode::from(2)
            }
        },
    };
    runtime.shutdown_timeout(Duration::from_secs(2));
    code
}
