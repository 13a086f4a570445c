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
        /// Take over the listening sockets of a running berth (zero-downtime upgrade):
        /// start this, then send SIGQUIT to the old process.
        #[arg(long)]
        upgrade: bool,
    },
    /// Inspect configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Inspect TLS certificates.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
}

#[derive(Subcommand)]
enum CertCommand {
    /// The active certificate: subject, names, issuer chain, expiry, source.
    Show {
        #[arg(short, long, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print the self-signed mode's CA certificate (PEM), for clients to trust.
    Ca {
        #[arg(short, long, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
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
        Command::Serve { config, upgrade } => serve(config, upgrade),
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
        Command::Cert {
            command: CertCommand::Show { config },
        } => match load(config.as_deref()) {
            Ok(cfg) => cert_show(&cfg),
            Err(code) => code,
        },
        Command::Cert {
            command: CertCommand::Ca { config },
        } => match load(config.as_deref()) {
            Ok(cfg) => cert_ca(&cfg),
            Err(code) => code,
        },
    }
}

fn cert_show(cfg: &Config) -> ExitCode {
    let Some(source) = berth::tls::source_for(cfg) else {
        println!("TLS is off (tls.mode = \"off\", or no certificate and only loopback listeners)");
        return ExitCode::SUCCESS;
    };
    if let berth::tls::Source::SelfSigned { state_dir, .. } = &source {
        if !berth::tls::selfsigned::Paths::new(state_dir)
            .server_cert()
            .exists()
        {
            eprintln!("berth: no self-signed certificate yet under {}; `berth serve` makes one on first start", state_dir.display());
            return ExitCode::from(1);
        }
    }
    match source.load() {
        Ok(m) => {
            let s = &m.summary;
            println!("source:   {}", source.name());
            println!("subject:  {}", s.subject);
            println!("names:    {}", s.sans.join(", "));
            println!("issuers:  {}", s.issuers.join(" <- "));
            println!("serial:   {}", s.serial);
            println!(
                "expires:  {} ({} days left)",
                berth::store::rfc3339(
                    std::time::UNIX_EPOCH
                        + std::time::Duration::from_secs(s.not_after.max(0) as u64)
                ),
                berth::tls::days_left(s)
            );
            println!("chain:    {} certificate(s) served", m.key.cert.len());
            if let berth::tls::Source::Acme { state_dir, .. } = &source {
                let paths = berth::tls::acme::Paths::new(state_dir);
                let planned = std::fs::read_to_string(paths.schedule()).ok();
                let due = berth::tls::acme::renewal_due(s, cfg.tls.acme.renew_before.map(|d| d.0));
                let computed = berth::store::rfc3339(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(due.max(0) as u64),
                );
                if paths.cert().exists() {
                    println!(
                        "renewal:  {}",
                        planned.map(|p| p.trim().to_owned()).unwrap_or(computed)
                    );
                } else {
                    println!("renewal:  now (no ACME certificate yet; a temporary one serves)");
                }
                println!("directory: {}", cfg.tls.acme.directory());
            }
            for w in &m.warnings {
                println!("warning:  {w}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("berth: certificate error: {e}");
            ExitCode::from(1)
        }
    }
}

fn cert_ca(cfg: &Config) -> ExitCode {
    let path = berth::tls::selfsigned::Paths::new(&cfg.state.dir).ca_cert();
    match std::fs::read_to_string(&path) {
        Ok(pem) => {
            print!("{pem}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "berth: {}: {e} (the self-signed mode makes its CA on first start)",
                path.display()
            );
            ExitCode::from(1)
        }
    }
}

fn load(path: Option<&std::path::Path>) -> Result<Config, ExitCode> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    Config::load(path, &env).map_err(|e| {
        eprintln!("berth: configuration error: {e}");
        ExitCode::from(2)
    })
}

fn serve(path: Option<PathBuf>, upgrade: bool) -> ExitCode {
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
    let tls = match berth::tls::source_for(&cfg).map(berth::tls::Tls::start) {
        None => None,
        Some(Ok(t)) => Some(Arc::new(t)),
        Some(Err(e)) => {
            eprintln!("berth: TLS: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(help) = berth::tls::trust_instructions(&cfg) {
        tracing::info!("{help}");
    }
    berth::frontdoor::serve(&cfg, registry, tls, upgrade)
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
