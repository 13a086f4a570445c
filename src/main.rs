//! The `berth` command line: parses arguments, loads configuration, and hands off to the
//! library. Exit codes: 0 success, 1 runtime failure, 2 bad configuration or usage.

use berth::api::Registry;
use berth::config::{Config, LogFormat};
use berth::store::Store;
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "A container-image registry appliance: TLS front door and OCI registry in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry.
    Serve {
        /// Configuration file (default: built-in defaults).
        #[arg(short, long, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Inspect configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check a configuration file (and the environment overrides); errors name the key.
    Check {
        /// The file to check (default: built-in defaults).
        file: Option<PathBuf>,
    },
    /// Print the effective configuration, secrets redacted.
    Show {
        #[arg(short, long, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::Config {
            command: ConfigCommand::Check { file },
        } => match load(file.as_deref()) {
            Ok(_) => {
                let what = file
                    .map(|f| f.display().to_string())
                    .unwrap_or_else(|| "built-in defaults".into());
                println!("{what}: ok");
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Config {
            command: ConfigCommand::Show { config },
        } => match load(config.as_deref()) {
            Ok(cfg) => {
                print!("{}", cfg.to_toml());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
    }
}

fn load(path: Option<&std::path::Path>) -> Result<Config, ExitCode> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    Config::load(path, &env).map_err(|e| {
        eprintln!("berth: configuration error: {e}");
        ExitCode::from(2)
    })
}

fn serve(path: Option<PathBuf>) -> ExitCode {
    let cfg = match load(path.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logging(&cfg);
    let store = match Store::open(&cfg.storage.root) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("berth: cannot open storage.root: {e}");
            return ExitCode::from(1);
        }
    };
    let registry = match Registry::new(&cfg, store) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            eprintln!("berth: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        root = %cfg.storage.root.display(),
        "berth starting"
    );
    berth::frontdoor::serve(&cfg, registry)
}

fn init_logging(cfg: &Config) {
    let filter = std::env::var("BERTH_LOG").unwrap_or_else(|_| cfg.log.level.clone());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match cfg.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
