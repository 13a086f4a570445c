//! The `berth` command line: parses arguments, loads configuration, and hands off to the
//! library. Exit codes: 0 success, 1 runtime failure, 2 bad configuration or usage.

use berth::api::Registry;
use berth::config::{Config, LogFormat};
use berth::store::s3::S3Driver;
use berth::store::{Driver, Store};
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// A runtime for a command that works on the store without the server.
fn offline_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("berth: {e}");
            ExitCode::from(1)
        })
}

/// The S3 driver that `[storage.s3]` describes, its bucket checked (on the runtime that
/// runs it).
async fn s3_driver(cfg: &Config) -> Result<S3Driver, String> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let (target, opts) = berth::store::s3::target_from(&cfg.storage.s3, &env)?;
    S3Driver::connect(&target, opts).await
}

/// Runs `$body` with `$store`, the configured store (filesystem or S3), and `$rt`, a
/// runtime to drive it; returns from the function when the store cannot be opened.
macro_rules! with_store {
    ($cfg:expr, |$store:ident, $rt:ident| $body:expr) => {{
        let $rt = match offline_runtime() {
            Ok(r) => r,
            Err(code) => return code,
        };
        match $cfg.storage.driver {
            berth::config::StorageDriver::Filesystem => {
                let $store = match Store::open(&$cfg.storage.root) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("berth: cannot open storage.root: {e}");
                        return ExitCode::from(1);
                    }
                };
                $body
            }
            berth::config::StorageDriver::S3 => {
                let $store = match $rt.block_on(s3_driver($cfg)) {
                    Ok(d) => Store::on(d),
                    Err(e) => {
                        eprintln!("berth: {e}");
                        return ExitCode::from(2);
                    }
                };
                $body
            }
        }
    }};
}

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
    /// Remove what nothing references any more: blobs (after gc.grace_period), untagged
    /// manifests (with --delete-untagged or gc.delete_untagged), abandoned uploads
    /// (uploads.purge_after). Safe while berth serves the same store.
    Gc {
        #[arg(short, long, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
        /// Print what would be removed; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also unlink manifests no tag reaches (as gc.delete_untagged = true).
        #[arg(long)]
        delete_untagged: bool,
    },
    /// Check the store: every blob's digest (its bytes are hashed), every link's target,
    /// every tag's manifest, every manifest's references. Prints one line per problem
    /// (kind, repository, digest, path) and a summary; exits 1 when something is (left)
    /// wrong. Safe while berth serves and collects the same store.
    #[command(visible_alias = "scrub")]
    Fsck {
        #[arg(short, long, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
        /// Remove what is provably broken (dangling and corrupt links, tags whose manifest
        /// is gone) and move corrupt blobs to <storage.root>/docker/registry/v2/.berth-quarantine;
        /// refused while a garbage collection runs.
        #[arg(long)]
        repair: bool,
        /// Blobs hashed at once.
        #[arg(short, long, default_value_t = berth::store::fsck::DEFAULT_WORKERS)]
        jobs: usize,
    },
    /// Manage repositories.
    Repo {
        #[command(subcommand)]
        command: RepoCommand,
        #[arg(short, long, env = "BERTH_CONFIG", global = true)]
        config: Option<PathBuf>,
    },
    /// Write repositories as an OCI image layout, to carry them across an air gap: a
    /// directory, a .tar (skopeo's oci-archive:) or - for standard output. Tags are named
    /// repo:tag in index.json. Safe while berth serves the same store.
    Export {
        #[arg(short, long, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
        /// Where to write: a directory, a file ending in .tar, or - (a tar on stdout).
        #[arg(short, long)]
        out: PathBuf,
        /// repo (all its tags), repo:tag, repo@digest, or globs: team-a/*, *:v1.*
        #[arg(required = true)]
        selectors: Vec<String>,
        /// Only tags matching this regular expression (of the selected repositories).
        #[arg(long)]
        tag_regex: Option<String>,
        /// Leave out referrers (signatures, SBOMs) of the selected manifests.
        #[arg(long)]
        no_referrers: bool,
        /// An earlier export (directory or .tar): blobs it holds are not written again.
        #[arg(long)]
        since: Option<PathBuf>,
    },
    /// Load an OCI image layout (a directory, a .tar, or - for standard input) into the
    /// store: every blob and manifest is checked against its digest before it is stored,
    /// tags are set last, and a re-run skips what is already stored. Safe while berth
    /// serves and collects the same store.
    Import {
        #[arg(short, long, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
        /// The layout: a directory, a .tar file, or - (a tar on stdin).
        path: PathBuf,
        /// The repository for index.json entries that name only a tag (umoci, skopeo
        /// oci:DIR:TAG) or none.
        #[arg(long)]
        repo: Option<String>,
        /// Print what would be added, and its size; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write man pages and shell completions into DIR (for packaging).
    #[command(hide = true)]
    GenAssets { dir: PathBuf },
    /// Manage the users of the htpasswd file (auth.htpasswd.path).
    User {
        #[command(subcommand)]
        command: UserCommand,
        #[arg(short, long, env = "BERTH_CONFIG", global = true)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RepoCommand {
    /// Delete a whole repository (tags, manifests, blob links, uploads); nested
    /// repositories stay, and the space comes back at the next garbage collection.
    Rm { name: String },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user (password from a prompt, or stdin with --password-stdin).
    Add {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change a user's password.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user.
    Del { name: String },
    /// List the users.
    List,
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
    /// Translate a registry:2 (distribution) config.yml and/or REGISTRY_* variables into
    /// appliance.toml (stdout or --output); what cannot be translated goes to stderr and
    /// into the file as comments.
    ImportDistribution {
        /// config.yml (default: the registry:2 image's own configuration)
        file: Option<PathBuf>,
        /// KEY=VALUE lines with REGISTRY_* variables (compose .env / env_file)
        #[arg(long)]
        env_file: Option<PathBuf>,
        /// Also apply this process's REGISTRY_* variables
        #[arg(long)]
        env: bool,
        /// Write the result here (refuses to overwrite)
        #[arg(short, long)]
        output: Option<PathBuf>,
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
        Command::Config {
            command:
                ConfigCommand::ImportDistribution {
                    file,
                    env_file,
                    env,
                    output,
                },
        } => import_distribution(file, env_file, env, output),
        Command::Gc {
            config,
            dry_run,
            delete_untagged,
        } => match load(config.as_deref()) {
            Ok(cfg) => gc(&cfg, dry_run, delete_untagged),
            Err(code) => code,
        },
        Command::Fsck {
            config,
            repair,
            jobs,
        } => match load(config.as_deref()) {
            Ok(cfg) => fsck(&cfg, repair, jobs),
            Err(code) => code,
        },
        Command::GenAssets { dir } => gen_assets(&dir),
        Command::Export {
            config,
            out,
            selectors,
            tag_regex,
            no_referrers,
            since,
        } => match load(config.as_deref()) {
            Ok(cfg) => export(cfg, out, &selectors, tag_regex, !no_referrers, since),
            Err(code) => code,
        },
        Command::Import {
            config,
            path,
            repo,
            dry_run,
        } => match load(config.as_deref()) {
            Ok(cfg) => import(&cfg, path, repo, dry_run),
            Err(code) => code,
        },
        Command::Repo {
            command: RepoCommand::Rm { name },
            config,
        } => match load(config.as_deref()) {
            Ok(cfg) => repo_rm(&cfg, &name),
            Err(code) => code,
        },
        Command::User { command, config } => match load(config.as_deref()) {
            Ok(cfg) => user(&cfg, command),
            Err(code) => code,
        },
    }
}

/// `berth gc`: one collection, the same the schedule of `berth serve` runs. Prints every
/// removed item on stdout (the same lines with --dry-run), then the total.
fn gc(cfg: &Config, dry_run: bool, delete_untagged: bool) -> ExitCode {
    use berth::store::gc;
    if cfg.storage.read_only && !dry_run {
        eprintln!(
            "berth: storage.read_only is on: nothing is removed (--dry-run shows what would be)"
        );
        return ExitCode::from(1);
    }
    let mut opts = gc::Options::from_config(cfg);
    opts.dry_run = dry_run;
    opts.delete_untagged |= delete_untagged;
    with_store!(cfg, |store, rt| {
        match rt.block_on(gc::run(&store, &opts)) {
            Ok(Some(report)) => {
                for item in report.items() {
                    println!("{item}");
                }
                for w in &report.warnings {
                    eprintln!("berth: warning: {w}");
                }
                println!("{}", report.summary());
                ExitCode::SUCCESS
            }
            Ok(None) => {
                eprintln!(
                    "berth: another collector is running on {}",
                    cfg.storage.root.display()
                );
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("berth: garbage collection failed: {e}");
                ExitCode::from(1)
            }
        }
    })
}

/// `berth fsck`: one check of the whole store (the one `[scrub]` runs in the server), with
/// `--repair` one that mends. Problems on stdout as they are found, then the totals.
fn fsck(cfg: &Config, repair: bool, jobs: usize) -> ExitCode {
    use berth::store::fsck;
    if cfg.storage.read_only && repair {
        eprintln!("berth: storage.read_only is on: nothing is repaired (without --repair, fsck only reads)");
        return ExitCode::from(1);
    }
    let opts = fsck::Options {
        repair,
        workers: jobs.max(1),
        ..fsck::Options::from_config(cfg)
    };
    with_store!(cfg, |store, rt| {
        let root = cfg.storage.root.clone();
        let mut print = |p: &fsck::Problem| println!("{}", p.line(&root));
        match rt.block_on(fsck::run(&store, &opts, &mut print)) {
            Ok(Some(summary)) => {
                println!("{}", summary.line());
                if summary.clean() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Ok(None) => {
                eprintln!(
                    "berth: a garbage collection is running on {}; run `berth fsck --repair` again when it has finished (a check without --repair runs beside it)",
                    root.display()
                );
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("berth: fsck failed: {e}");
                ExitCode::from(1)
            }
        }
    })
}

/// `berth repo rm NAME`: the same deletion as `DELETE /berth/v1/repositories/NAME`.
fn repo_rm(cfg: &Config, name: &str) -> ExitCode {
    let repo: berth::oci::RepositoryName = match name.parse() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("berth: {name:?} is not a repository name: {e}");
            return ExitCode::from(2);
        }
    };
    if cfg.storage.read_only {
        eprintln!("berth: storage.read_only is on: nothing is deleted");
        return ExitCode::from(1);
    }
    with_store!(cfg, |store, rt| {
        match rt.block_on(store.repository_delete(&repo)) {
            Ok(true) => {
                println!(
                    "deleted {repo}; its blobs are freed by the next garbage collection (berth gc)"
                );
                ExitCode::SUCCESS
            }
            Ok(false) => {
                eprintln!(
                    "berth: no repository {repo} in {}",
                    cfg.storage.root.display()
                );
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("berth: {e}");
                ExitCode::from(1)
            }
        }
    })
}

/// `berth export`: the selected repositories as an OCI image layout.
fn export(
    mut cfg: Config,
    out: PathBuf,
    selectors: &[String],
    tag_regex: Option<String>,
    referrers: bool,
    since: Option<PathBuf>,
) -> ExitCode {
    use berth::airgap::{ExportOptions, ExportSelector};
    let selectors = match selectors
        .iter()
        .map(|s| s.parse::<ExportSelector>())
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("berth: {e}");
            return ExitCode::from(2);
        }
    };
    let tag_regex = match tag_regex.map(|r| regex::Regex::new(&r)).transpose() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("berth: --tag-regex: {e}");
            return ExitCode::from(2);
        }
    };
    // The bytes are read here, not handed to a client as presigned URLs.
    cfg.storage.s3.redirect = false;
    let to_stdout = out == std::path::Path::new("-");
    let opts = ExportOptions {
        out,
        selectors,
        tag_regex,
        referrers,
        since,
    };
    let cfg = &cfg;
    with_store!(cfg, |store, rt| {
        let start = std::time::Instant::now();
        match rt.block_on(berth::airgap::export(&store, &opts)) {
            Ok(sum) => {
                let line = sum.line("exported", start.elapsed().as_secs_f64());
                if to_stdout {
                    eprintln!("{line}");
                } else {
                    println!("{line}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("berth: export failed: {e}");
                ExitCode::from(1)
            }
        }
    })
}

/// `berth import`: an OCI image layout into the store, through the registry's own API code.
fn import(cfg: &Config, path: PathBuf, repo: Option<String>, dry_run: bool) -> ExitCode {
    use berth::airgap::ImportOptions;
    let repo = match repo
        .map(|r| r.parse::<berth::oci::RepositoryName>())
        .transpose()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("berth: --repo: {e}");
            return ExitCode::from(2);
        }
    };
    if cfg.storage.read_only && !dry_run {
        eprintln!(
            "berth: storage.read_only is on: nothing is imported (--dry-run shows what would be)"
        );
        return ExitCode::from(1);
    }
    let opts = ImportOptions {
        path,
        repo,
        dry_run,
        spool_dir: cfg.state.dir.clone(),
        manifest_max: cfg.limits.manifest_max.0,
    };
    with_store!(cfg, |store, rt| {
        let registry = match Registry::new(cfg, Arc::new(store)) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("berth: {e}");
                return ExitCode::from(2);
            }
        };
        let start = std::time::Instant::now();
        match rt.block_on(berth::airgap::import(&registry, &opts)) {
            Ok(sum) if dry_run => {
                println!(
                    "{}",
                    sum.line("would import", start.elapsed().as_secs_f64())
                );
                ExitCode::SUCCESS
            }
            Ok(sum) => {
                println!("{}", sum.line("imported", start.elapsed().as_secs_f64()));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("berth: import failed: {e}");
                ExitCode::from(1)
            }
        }
    })
}

/// `berth gen-assets DIR`: man pages (clap_mangen) and shell completions (clap_complete)
/// for the packages.
fn gen_assets(dir: &std::path::Path) -> ExitCode {
    use clap::CommandFactory;
    let run = || -> std::io::Result<()> {
        let (man, comp) = (dir.join("man"), dir.join("completions"));
        std::fs::create_dir_all(&man)?;
        std::fs::create_dir_all(&comp)?;
        let mut cmd = Cli::command();
        clap_mangen::generate_to(cmd.clone(), &man)?;
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            clap_complete::generate_to(shell, &mut cmd, "berth", &comp)?;
        }
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {}: {e}", dir.display());
            ExitCode::from(1)
        }
    }
}

/// `berth config import-distribution`: registry:2's config.yml and variables to
/// appliance.toml, with what could not be translated on stderr.
fn import_distribution(
    file: Option<PathBuf>,
    env_file: Option<PathBuf>,
    env: bool,
    output: Option<PathBuf>,
) -> ExitCode {
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
    };
    let yaml = match file.as_deref().map(read).transpose() {
        Ok(y) => y,
        Err(e) => {
            eprintln!("berth: {e}");
            return ExitCode::from(2);
        }
    };
    let mut vars = Vec::new();
    if let Some(p) = &env_file {
        match read(p) {
            Ok(t) => vars.extend(berth::import::parse_env_file(&t)),
            Err(e) => {
                eprintln!("berth: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if env {
        vars.extend(std::env::vars().filter(|(k, _)| k.starts_with("REGISTRY_")));
    }
    let (text, warnings) = match berth::import::import_distribution_env(yaml.as_deref(), &vars) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("berth: cannot translate: {e}");
            return ExitCode::from(2);
        }
    };
    for w in &warnings {
        eprintln!("berth: review: {w}");
    }
    // Debian's docker-registry config points auth.htpasswd.path at a directory.
    if let Ok(cfg) = toml::from_str::<Config>(&text) {
        if cfg.auth.mode == berth::config::AuthMode::Htpasswd && cfg.auth.htpasswd.path.is_dir() {
            eprintln!(
                "berth: review: auth.htpasswd.path {} is a directory, not an htpasswd file",
                cfg.auth.htpasswd.path.display()
            );
        }
    }
    match output {
        None => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Some(p) => {
            use std::io::Write;
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&p)
                .and_then(|mut f| f.write_all(text.as_bytes()))
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("berth: {}: {e}", p.display());
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// `berth user ...`: edits the htpasswd file atomically (mode 0640). Passwords never come
/// from the command line, where other users could read them.
fn user(cfg: &Config, command: UserCommand) -> ExitCode {
    use berth::auth::htpasswd;
    let path = &cfg.auth.htpasswd.path;
    let mut users: std::collections::BTreeMap<String, String> = if path.exists() {
        match htpasswd::read(path) {
            Ok(u) => u.into_iter().collect(),
            Err(e) => {
                eprintln!("berth: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        Default::default()
    };
    let (name, stdin, adding) = match &command {
        UserCommand::List => {
            for u in users.keys() {
                println!("{u}");
            }
            return ExitCode::SUCCESS;
        }
        UserCommand::Del { name } => {
            if users.remove(name).is_none() {
                eprintln!("berth: no user {name:?} in {}", path.display());
                return ExitCode::from(1);
            }
            return match htpasswd::write(path, &users) {
                Ok(()) => {
                    println!("removed {name} from {}", path.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("berth: {e}");
                    ExitCode::from(1)
                }
            };
        }
        UserCommand::Add {
            name,
            password_stdin,
        } => (name, *password_stdin, true),
        UserCommand::Passwd {
            name,
            password_stdin,
        } => (name, *password_stdin, false),
    };
    if name.is_empty() || name.contains(':') || name.chars().any(char::is_whitespace) {
        eprintln!("berth: {name:?}: a user name has no colon or whitespace");
        return ExitCode::from(2);
    }
    if adding && users.contains_key(name) {
        eprintln!("berth: user {name:?} exists; use `berth user passwd {name}`");
        return ExitCode::from(1);
    }
    if !adding && !users.contains_key(name) {
        eprintln!("berth: no user {name:?}; use `berth user add {name}`");
        return ExitCode::from(1);
    }
    let password = match read_password(stdin) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("berth: {e}");
            return ExitCode::from(2);
        }
    };
    let hash = match htpasswd::hash(&password) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("berth: hashing failed: {e}");
            return ExitCode::from(1);
        }
    };
    users.insert(name.clone(), hash);
    match htpasswd::write(path, &users) {
        Ok(()) => {
            let verb = if adding {
                "added"
            } else {
                "changed the password of"
            };
            println!("{verb} {name} in {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("berth: {e}");
            ExitCode::from(1)
        }
    }
}

/// One line from stdin (`--password-stdin`), or a prompt on the terminal without echo.
fn read_password(from_stdin: bool) -> Result<String, String> {
    use std::io::BufRead;
    let line = if from_stdin {
        let mut l = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut l)
            .map_err(|e| e.to_string())?;
        l
    } else {
        let tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .map_err(|_| "no terminal to prompt on; use --password-stdin".to_owned())?;
        let stty = |arg: &str| {
            std::process::Command::new("stty")
                .arg(arg)
                .stdin(
                    tty.try_clone()
                        .map(std::process::Stdio::from)
                        .unwrap_or(std::process::Stdio::null()),
                )
                .status()
        };
        let mut out = tty.try_clone().map_err(|e| e.to_string())?;
        let mut ask = |prompt: &str| -> Result<String, String> {
            use std::io::Write;
            let _ = write!(out, "{prompt}");
            let _ = out.flush();
            let _ = stty("-echo");
            let mut l = String::new();
            let r = std::io::BufReader::new(tty.try_clone().map_err(|e| e.to_string())?)
                .read_line(&mut l);
            let _ = stty("echo");
            let _ = writeln!(out);
            r.map_err(|e| e.to_string())?;
            Ok(l)
        };
        let first = ask("Password: ")?;
        let again = ask("Again: ")?;
        if first != again {
            return Err("the passwords differ".into());
        }
        first
    };
    let p = line.trim_end_matches(['\n', '\r']).to_owned();
    if p.is_empty() {
        return Err("empty password".into());
    }
    Ok(p)
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
                berth::timestamp::seconds(
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
                let computed = berth::timestamp::seconds(
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
    match cfg.storage.driver {
        berth::config::StorageDriver::Filesystem => match Store::open(&cfg.storage.root) {
            Ok(s) => serve_on(cfg, path, upgrade, s),
            Err(e) => {
                eprintln!("berth: cannot open storage.root: {e}");
                ExitCode::from(1)
            }
        },
        berth::config::StorageDriver::S3 => {
            let env: Vec<(String, String)> = std::env::vars().collect();
            let opened =
                berth::store::s3::target_from(&cfg.storage.s3, &env).and_then(|(target, opts)| {
                    // The check runs on a runtime of its own; the serving driver's
                    // connections belong to the server's runtime.
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    rt.block_on(S3Driver::check(&target, &opts))?;
                    S3Driver::unchecked(&target, opts)
                });
            match opened {
                Ok(d) => serve_on(cfg, path, upgrade, Store::on(d)),
                Err(e) => {
                    eprintln!("berth: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// The server over `store`, whichever medium it is on.
fn serve_on<D: Driver>(
    cfg: Config,
    path: Option<PathBuf>,
    upgrade: bool,
    store: Store<D>,
) -> ExitCode {
    let auth = match berth::auth::Auth::load(&cfg) {
        Ok(a) => a.map(Arc::new),
        Err(e) => {
            eprintln!("berth: {e}");
            return ExitCode::from(2);
        }
    };
    let external = cfg.auth.token.issuer == berth::config::TokenIssuer::External
        && cfg.auth.mode == berth::config::AuthMode::Token;
    if auth.as_ref().is_some_and(|a| a.user_count() == 0) && !external {
        // A fresh package install: the service runs, and says what to do next.
        tracing::warn!(
            "no users in {}: every login is refused until one is added: sudo berth user add -c {} NAME",
            cfg.auth.htpasswd.path.display(),
            path.as_deref().map_or("appliance.toml".into(), |p| p.display().to_string())
        );
    }
    let collected = store.clone();
    let store_location = store.location();
    let notifier = match berth::notify::Notifier::start(&cfg) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("berth: notifications: {e}");
            return ExitCode::from(2);
        }
    };
    let mirror = match berth::mirror::Mirror::from_config(&cfg.proxy) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("berth: {e}");
            return ExitCode::from(2);
        }
    };
    let content: Arc<dyn berth::store::Content> = match &mirror {
        Some(m) => {
            berth::mirror::cache::enable_metrics();
            Arc::new(berth::mirror::cache::PullThrough::new(
                Arc::new(store),
                m.clone(),
            ))
        }
        None => Arc::new(store),
    };
    let tls = match berth::tls::source_for(&cfg).map(berth::tls::Tls::start) {
        None => None,
        Some(Ok(t)) => Some(Arc::new(t)),
        Some(Err(e)) => {
            eprintln!("berth: TLS: {e}");
            return ExitCode::from(2);
        }
    };
    let registry = match Registry::new(&cfg, content) {
        Ok(r) => Arc::new(
            r.with_auth(auth.clone())
                .with_notifier(notifier)
                .with_mirror(mirror)
                .with_tls(tls.clone()),
        ),
        Err(e) => {
            eprintln!("berth: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        store = %store_location,
        "berth starting"
    );
    if let Some(help) = berth::tls::trust_instructions(&cfg) {
        tracing::info!("{help}");
        tracing::info!("for a public name, use Let's Encrypt: tls.mode = \"acme\", tls.hostnames = [\"registry.example.com\"], tls.acme.email (see [tls.acme] in the configuration)");
    }
    // SIGHUP re-reads the configuration and takes its permission rules (users come from
    // the htpasswd file, which is watched anyway) and storage.read_only. A broken file
    // keeps the current settings.
    let on_hup: Option<Box<dyn Fn() + Send>> = {
        let mode = cfg.auth.mode;
        let registry = registry.clone();
        Some(Box::new(move || match load(path.as_deref()) {
            Ok(new) => {
                if let Some(auth) = &auth {
                    if new.auth.mode != mode {
                        tracing::warn!("auth.mode changed: restart berth to switch modes");
                    }
                    auth.reload_policy(&new.auth);
                    tracing::info!(
                        rules = new.auth.rules.len(),
                        admins = new.auth.admins.len(),
                        "permission rules reloaded"
                    );
                }
                let store = registry.store();
                if store.read_only() != new.storage.read_only {
                    store.set_read_only(new.storage.read_only);
                    tracing::warn!(
                        read_only = new.storage.read_only,
                        "storage.read_only changed"
                    );
                }
            }
            Err(_) => tracing::warn!(
                "configuration reload failed; the current permission rules and settings stay"
            ),
        }))
    };
    // Also when gc.interval is "0s": it first puts back what an interrupted run left.
    berth::store::fsck::spawn(
        collected.clone(),
        berth::store::fsck::Options::from_config(&cfg),
        cfg.scrub.interval.0,
    );
    berth::store::gc::spawn(
        collected,
        berth::store::gc::Options::from_config(&cfg),
        cfg.gc.interval.0,
    );
    berth::frontdoor::serve(&cfg, registry, tls, upgrade, on_hup)
}

fn init_logging(cfg: &Config) {
    let mut filter = std::env::var("BERTH_LOG").unwrap_or_else(|_| cfg.log.level.clone());
    // rustls warns once per connection about client mistakes (an IP address as SNI, as
    // wrk and openssl send): a flood at scale. Unless asked for, only its errors show.
    if !filter.contains("rustls") {
        filter.push_str(",rustls=error");
    }
    // pingora's failed-handshake errors show only when debugging (see handshake_log).
    let quiet = berth::frontdoor::handshake_log::HandshakeLog {
        show: filter.contains("debug") || filter.contains("trace"),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = match cfg.log.format {
        LogFormat::Json => builder.json().finish().with(quiet).try_init(),
        LogFormat::Text => builder.finish().with(quiet).try_init(),
    };
}
