//! Command-line interface: `run`, `check`, `graph`, `generate`, `bench`, `operators`. No engine logic lives here.

use crate::diag::{render, Diagnostic, SourceFile};
use crate::plan::Plan;
use crate::runtime::{RunOptions, RunSummary};
use crate::spec::PipelineSpec;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// eventflow: declared event pipelines on timely and differential dataflow.
#[derive(Parser, Debug)]
#[command(name = "eventflow", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a pipeline to the end of its inputs and write its outputs.
    Run {
        /// Pipeline file (TOML).
        file: PathBuf,
        /// Worker threads [default: number of cores].
        #[arg(short, long)]
        workers: Option<usize>,
        /// Output folder [default: out/<pipeline name>].
        #[arg(short, long)]
        out: Option<PathBuf>,
        /// Do not print progress or the summary.
        #[arg(short, long)]
        quiet: bool,
        /// Resume the unfinished run in the output folder, and fail if there is none or it was
        /// a run of another pipeline or other inputs. Without it, such a run is resumed anyway
        /// when found.
        #[arg(long, conflicts_with = "no_commit")]
        resume: bool,
        /// How often file sinks commit what they wrote, for crash recovery (e.g. `500ms`, `5s`).
        #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
        commit_interval: std::time::Duration,
        /// Commit nothing: a crashed run cannot be resumed (for benchmarking the cost of commits).
        #[arg(long)]
        no_commit: bool,
        /// Run as one of N cooperating processes (timely's cluster mode; see docs/cluster.md).
        /// Needs --process and --hostfile, or --local.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1024))]
        processes: Option<u64>,
        /// This process's index in the cluster, 0..N; process 0 writes the outputs.
        #[arg(
            long,
            value_name = "I",
            requires = "processes",
            requires = "hostfile",
            conflicts_with = "local"
        )]
        process: Option<usize>,
        /// Host file: one `host:port` per line, process 0 first; the same file on every machine.
        #[arg(
            long,
            value_name = "HOSTS",
            requires = "processes",
            requires = "process",
            conflicts_with = "local"
        )]
        hostfile: Option<PathBuf>,
        /// Start and supervise all N processes on this machine, on free loopback ports
        /// [--workers default: cores / N].
        #[arg(long, requires = "processes")]
        local: bool,
        /// Live sources (rabbitmq) end their input once no message came for this long
        /// (e.g. `5s`); without it they run until Ctrl-C or SIGTERM.
        #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
        stop_when_idle: Option<std::time::Duration>,
    },
    /// Publish every record of a CSV (header skipped) or JSON Lines file to a RabbitMQ queue
    /// (one persistent message per record, with publisher confirms) or a Kafka topic (one
    /// message per record, keyed FILE:POSITION; feature `kafka`).
    #[command(group = clap::ArgGroup::new("target").required(true).args(["queue", "topic"]))]
    Publish {
        /// Data file (`.csv`, or JSON Lines).
        file: PathBuf,
        /// Queue to publish to (declared durable if missing).
        #[arg(long)]
        queue: Option<String>,
        /// Broker URL [default: $EVENTFLOW_AMQP_URL, else amqp://guest:guest@127.0.0.1:5672/%2f].
        #[arg(long, value_name = "URL", requires = "queue")]
        to: Option<String>,
        /// Kafka topic to publish to.
        #[arg(long)]
        topic: Option<String>,
        /// Kafka bootstrap servers [default: $EVENTFLOW_KAFKA_BROKERS, else 127.0.0.1:9092].
        #[arg(long, value_name = "HOST:PORT", requires = "topic")]
        brokers: Option<String>,
        /// Create the topic with this many partitions first, if it does not exist.
        #[arg(long, value_name = "N", requires = "topic")]
        partitions: Option<i32>,
    },
    /// Validate a pipeline file and print its plan: nodes, edges and schemas.
    Check {
        /// Pipeline file (TOML).
        file: PathBuf,
    },
    /// Print a pipeline's graph in Graphviz DOT (`eventflow graph FILE | dot -Tsvg > graph.svg`).
    Graph {
        /// Pipeline file (TOML).
        file: PathBuf,
    },
    /// Write a deterministic sample dataset: one CSV file, or a folder of related CSV files.
    Generate {
        /// Which dataset.
        dataset: Dataset,
        /// Number of events: data lines over all files of the dataset (for clickstream, the
        /// lines of clickstream.csv; see each dataset for the split).
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Random seed; the same seed gives the same bytes.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Share of malformed records to include in the event files, e.g. 0.01.
        #[arg(long, default_value_t = 0.0)]
        malformed_share: f64,
        /// Output: a folder (created if needed) for the dataset's files; for orders and
        /// clickstream, a path ending in `.csv` writes the event file alone.
        #[arg(long)]
        out: PathBuf,
    },
    /// Benchmark a pipeline: repeated runs (each a child process) per worker count, with a
    /// table of events/s and peak memory, `bench.csv` and `bench.svg`.
    Bench {
        /// Pipeline file (TOML).
        file: PathBuf,
        /// Generate this many input events (orders or clickstream, from the source schema)
        /// instead of reading the pipeline's own inputs; for `nexmark` sources, the number of
        /// Nexmark events.
        #[arg(long)]
        events: Option<u64>,
        /// Worker counts to run, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        workers: Vec<usize>,
        /// Runs per worker count.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Output folder for bench.csv and bench.svg [default: out/bench/<pipeline name>].
        #[arg(short, long)]
        out: Option<PathBuf>,
    },
    /// List the source, transform and sink types.
    Operators,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Dataset {
    /// E-commerce orders: orders.csv (order_id, ts, customer_id, category, product, quantity, unit_price, amount, status).
    Orders,
    /// Website clicks: clickstream.csv (event_id, ts, user_id, page, event_type, referrer); as a folder also users.csv and deletions.csv (bot views to retract).
    Clickstream,
    /// Social network, a folder: follows.csv (ts, follower, followee, op) about 30% and posts.csv (post_id, ts, author, hashtag, text) about 70% of the events.
    Social,
    /// Online shop, a folder: orders.csv 46%, payments.csv 39%, cancellations.csv 2%, inventory.csv 12% of the events.
    Ecommerce,
}

/// Writes a generated dataset to `out`: a single `.csv` file where the dataset allows it,
/// else a folder. Returns a description of what was written.
fn generate(
    dataset: Dataset,
    events: u64,
    seed: u64,
    malformed_share: f64,
    out: &Path,
) -> std::io::Result<String> {
    use crate::generate::{clickstream, clickstream_dir, ecommerce, social};
    let single_file = out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let orders = crate::generate::OrdersConfig {
        events,
        seed,
        malformed_share,
        ..Default::default()
    };
    let clicks = clickstream::ClickstreamConfig {
        events,
        seed,
        malformed_share,
        ..Default::default()
    };
    let (path, files) = match dataset {
        Dataset::Orders | Dataset::Clickstream if single_file => {
            if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(out)?);
            if let Dataset::Orders = dataset {
                crate::generate::write_orders_csv(&orders, &mut w)?;
            } else {
                clickstream::write_clickstream_csv(&clicks, &mut w)?;
            }
            std::io::Write::flush(&mut w)?;
            return Ok(format!("{}", out.display()));
        }
        Dataset::Social | Dataset::Ecommerce if single_file => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "this dataset has several files: give --out a folder, not a .csv file",
            ));
        }
        Dataset::Orders => {
            std::fs::create_dir_all(out)?;
            let mut w = crate::generate::create_in(out, "orders.csv")?;
            crate::generate::write_orders_csv(&orders, &mut w)?;
            (out, "orders.csv")
        }
        Dataset::Clickstream => {
            clickstream_dir::write_clickstream_dir(&clicks, out)?;
            (out, "clickstream.csv, users.csv, deletions.csv")
        }
        Dataset::Social => {
            let cfg = social::SocialConfig {
                events,
                seed,
                malformed_share,
                ..Default::default()
            };
            social::write_social(&cfg, out)?;
            (out, "follows.csv, posts.csv")
        }
        Dataset::Ecommerce => {
            let cfg = ecommerce::EcommerceConfig {
                events,
                seed,
                malformed_share,
                ..Default::default()
            };
            ecommerce::write_ecommerce(&cfg, out)?;
            (
                out,
                "orders.csv, payments.csv, cancellations.csv, inventory.csv",
            )
        }
    };
    Ok(format!("{} ({files})", path.display()))
}

/// Parses arguments and runs the command; returns the process exit code
/// (0 ok, 1 invalid pipeline or unusable files found before the run, 2 runtime failure).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { file } => match load(&file) {
            Ok(plan) => {
                print!("{}", plan.explain());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Graph { file } => match load(&file) {
            Ok(plan) => {
                print!("{}", plan.to_dot());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Run {
            file,
            workers,
            out,
            quiet,
            resume,
            commit_interval,
            no_commit,
            processes,
            process,
            hostfile,
            local,
            stop_when_idle,
        } => {
            let plan = match load(&file) {
                Ok(p) => p,
                Err(code) => return code,
            };
            let processes = processes.unwrap_or(1) as usize;
            let cores = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1);
            if local {
                // The processes share this machine's cores.
                let workers = workers.unwrap_or((cores / processes).max(1));
                let mut args: Vec<std::ffi::OsString> = vec![
                    "run".into(),
                    file.into_os_string(),
                    "--workers".into(),
                    workers.to_string().into(),
                    "--commit-interval".into(),
                    format!("{}ms", commit_interval.as_millis()).into(),
                ];
                if let Some(out) = out {
                    args.extend(["--out".into(), out.into_os_string()]);
                }
                for (on, flag) in [
                    (quiet, "--quiet"),
                    (resume, "--resume"),
                    (no_commit, "--no-commit"),
                ] {
                    if on {
                        args.push(flag.into());
                    }
                }
                return crate::launch::run_local(&args, processes);
            }
            let cluster = match (processes, process, hostfile) {
                (1, _, _) => None,
                (n, Some(i), Some(hosts)) => {
                    if i >= n {
                        eprintln!("error: --process {i} is out of range: with --processes {n}, give 0 to {}", n - 1);
                        return ExitCode::from(1);
                    }
                    match crate::runtime::cluster::read_hostfile(&hosts, n) {
                        Ok(addresses) => Some(crate::runtime::Cluster {
                            processes: n,
                            process: i,
                            addresses,
                        }),
                        Err(e) => {
                            eprintln!("error: {e}");
                            return ExitCode::from(1);
                        }
                    }
                }
                (n, _, _) => {
                    eprintln!("error: --processes {n} needs --process I and --hostfile HOSTS (or --local to start all {n} processes here)");
                    return ExitCode::from(1);
                }
            };
            let workers = workers.unwrap_or(cores);
            let out_dir = out.unwrap_or_else(|| Path::new("out").join(&plan.name));
            let writes = cluster.as_ref().is_none_or(|c| c.process == 0);
            let position = cluster.as_ref().map(|c| (c.process, c.processes));
            let opts = RunOptions {
                workers,
                out_dir: out_dir.clone(),
                progress: !quiet,
                recovery: crate::runtime::RecoveryOptions {
                    commit_interval: (!no_commit).then_some(commit_interval),
                    require_resume: resume,
                },
                cluster,
                stop_when_idle,
            };
            let plan = Arc::new(plan);
            match crate::runtime::run(plan.clone(), &opts) {
                Ok(_) if !writes => {
                    if let (false, Some((i, n))) = (quiet, position) {
                        eprintln!("process {i} of {n} finished; process 0 writes the outputs and the summary");
                    }
                    ExitCode::SUCCESS
                }
                Ok(summary) => {
                    if !quiet {
                        eprint!("{}", summary.render());
                        eprintln!("outputs in {}", out_dir.display());
                    }
                    if let Some(signal) = &summary.interrupted {
                        let until = summary
                            .outputs_final_before
                            .as_deref()
                            .unwrap_or("the start");
                        eprintln!(
                            "stopped by {signal}: outputs are final and complete up to {until}"
                        );
                        // The shell convention: 128 + signal number.
                        return ExitCode::from(if signal == "SIGTERM" { 143 } else { 130 });
                    }
                    report_balance(&summary)
                }
                // Found before the run started: like an invalid pipeline, nothing was written.
                Err(crate::runtime::RunError::Environment(diags)) => {
                    print_diagnostics(&plan.file, &diags);
                    eprintln!("error: the run did not start; nothing was written");
                    ExitCode::from(1)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    // A refused resume is a usage error, like an invalid pipeline: nothing ran.
                    let refused = matches!(
                        e,
                        crate::runtime::RunError::Resume { .. }
                            | crate::runtime::RunError::Cluster(_)
                    );
                    ExitCode::from(if refused { 1 } else { 2 })
                }
            }
        }
        Command::Publish {
            file,
            queue,
            to,
            topic,
            brokers,
            partitions,
        } => {
            let published = match (queue, topic) {
                (Some(queue), _) => {
                    crate::connectors::amqp_sink::publish_file(&file, to.as_deref(), &queue)
                        .map(|n| (n, format!("queue `{queue}`")))
                }
                (None, Some(topic)) => publish_topic(&file, brokers.as_deref(), &topic, partitions)
                    .map(|n| (n, format!("topic `{topic}`"))),
                (None, None) => unreachable!("clap requires --queue or --topic"),
            };
            match published {
                Ok((n, to)) => {
                    eprintln!("published {n} messages from {} to {to}", file.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Generate {
            dataset,
            events,
            seed,
            malformed_share,
            out,
        } => match generate(dataset, events, seed, malformed_share, &out) {
            Ok(written) => {
                eprintln!(
                    "wrote {events} {} events to {written}",
                    format!("{dataset:?}").to_lowercase()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot write `{}`: {e}", out.display());
                ExitCode::from(2)
            }
        },
        Command::Bench {
            file,
            events,
            workers,
            repeat,
            out,
        } => {
            if let Err(code) = load(&file) {
                return code;
            }
            let exe = match std::env::current_exe() {
                Ok(exe) => exe,
                Err(e) => {
                    eprintln!("error: cannot find the eventflow binary: {e}");
                    return ExitCode::from(2);
                }
            };
            let opts = crate::bench::BenchOptions {
                events,
                workers,
                repeat,
                out_dir: out,
                ..crate::bench::BenchOptions::new(file, exe)
            };
            match crate::bench::run_bench(&opts) {
                Ok(report) => {
                    print!("{}", report.render_table());
                    eprintln!(
                        "wrote {} and {}",
                        report.csv_path.display(),
                        report.svg_path.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Operators => {
            println!("sources:");
            for (name, doc) in crate::connectors::SOURCE_TYPES {
                println!("  {name:<10} {doc}");
            }
            println!("transforms:");
            for t in crate::registry::TRANSFORMS {
                println!("  {:<10} {}", t.name(), t.summary());
            }
            println!("sinks:");
            for (name, doc) in crate::connectors::SINK_TYPES {
                println!("  {name:<10} {doc}");
            }
            ExitCode::SUCCESS
        }
    }
}

/// Parses `--commit-interval`: a duration as in pipeline files, greater than zero.
fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    match crate::record::time::parse_duration_ms(text) {
        Some(0) => Err("the commit interval must be greater than zero".into()),
        Some(ms) => Ok(std::time::Duration::from_millis(ms)),
        None => Err(format!(
            "`{text}` is not a duration; write e.g. `250ms`, `1s` or `1m`"
        )),
    }
}

fn report_balance(summary: &RunSummary) -> ExitCode {
    if summary.balanced() {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: the run lost track of records (read ≠ emitted + filtered + dead-lettered); this is a bug");
        ExitCode::from(2)
    }
}

/// Prints diagnostics about a pipeline file on stderr.
fn print_diagnostics(source: &SourceFile, diags: &[Diagnostic]) {
    eprint!("{}", render(source, diags, std::io::stderr().is_terminal()));
}

/// Loads and plans a pipeline file, printing diagnostics on failure (exit code 1).
fn load(file: &Path) -> Result<Plan, ExitCode> {
    let fail = |source: &SourceFile, diags: &[Diagnostic]| {
        print_diagnostics(source, diags);
        let errors = diags.iter().filter(|d| d.is_error()).count();
        eprintln!(
            "error: `{}` has {errors} error{}",
            source.name,
            if errors == 1 { "" } else { "s" }
        );
        ExitCode::from(1)
    };
    let spec = PipelineSpec::load(file).map_err(|(source, diags)| fail(&source, &diags))?;
    crate::plan::build(&spec).map_err(|diags| fail(&spec.file, &diags))
}

/// `eventflow publish --topic`: creates the topic first when asked, then publishes the file.
#[cfg(feature = "kafka")]
fn publish_topic(
    file: &std::path::Path,
    brokers: Option<&str>,
    topic: &str,
    partitions: Option<i32>,
) -> Result<u64, String> {
    if let Some(n) = partitions {
        let b = crate::connectors::kafka::resolve_brokers(brokers);
        crate::connectors::kafka::create_topic(&b, topic, n)?;
    }
    crate::connectors::kafka_sink::publish_file(file, brokers, topic)
}

#[cfg(not(feature = "kafka"))]
fn publish_topic(
    _: &std::path::Path,
    _: Option<&str>,
    _: &str,
    _: Option<i32>,
) -> Result<u64, String> {
    Err(crate::connectors::NO_KAFKA.to_string())
}
