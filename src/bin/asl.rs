//! `asl`: look inside rollout logs (rollout.asl, or rollout.asl.xz): dump them as text or convert
//! their actor poses to Parquet.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use drivekit::rollout::convert::{self, LogSummary};

/// Read AlpaSim rollout logs (rollout.asl; .xz is decompressed on the fly).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print every record as text: rollout metadata, actors, and each step's poses (x, y, yaw).
    Dump {
        /// The log (a batch dir's rollout.asl or rollout.asl.xz).
        file: PathBuf,
        /// Print at most this many steps per rollout (all are counted).
        #[arg(long)]
        steps: Option<usize>,
    },
    /// Write one Parquet row per actor pose: rollout_id, rollout_index, scene_id, timestamp_us,
    /// actor_id, x, y, z, yaw.
    ToParquet {
        /// The log.
        file: PathBuf,
        /// Output Parquet file (written atomically).
        #[arg(short, long)]
        out: PathBuf,
    },
}

fn report(s: &LogSummary) -> ExitCode {
    match &s.problem {
        Some(p) => {
            eprintln!("asl: {p}");
            ExitCode::from(1)
        }
        None => ExitCode::SUCCESS,
    }
}

fn main() -> ExitCode {
    drivekit::report::quiet_on_closed_stdout();
    let args = Args::parse();
    let result = match args.command {
        Command::Dump { file, steps } => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            convert::dump(&file, &mut out, steps)
        }
        Command::ToParquet { file, out } => convert::to_parquet(&file, &out).inspect(|s| {
            println!(
                "{} rollouts, {} steps, {} actor poses → {}",
                s.rollouts,
                s.steps,
                s.poses,
                out.display()
            )
        }),
    };
    match result {
        Ok(s) => report(&s),
        Err(e) => {
            eprintln!("asl: {e}");
            ExitCode::from(2)
        }
    }
}
