//! Command line of the `kandle-operator` binary: `run` (the default) with its flags, each with
//! an environment variable fallback, and `crd`, which prints the CustomResourceDefinition.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::autoscale::Windows;

use crate::client::Limits;
use crate::config::{
    AutoscaleConfig, OperatorConfig, CONTROLLER_NAME, DEFAULT_KUBE_API_BURST, DEFAULT_KUBE_API_QPS,
    DEFAULT_RECONCILE_CONCURRENCY, DEFAULT_RUNTIME_IMAGE,
};

/// The kandle operator: serves ModelDeployments (kandle.dev/v1alpha1) with kandle-runtime pods.
#[derive(Parser, Debug)]
#[command(
    name = "kandle-operator",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do (default: run).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags of `run`, accepted without the subcommand too.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controller (the default).
    Run(Box<RunArgs>),
    /// Print the ModelDeployment CustomResourceDefinition as YAML and exit.
    Crd,
}

/// Log line format.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags of the controller.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Watch ModelDeployments in this namespace only (default: all namespaces).
    #[arg(long, env = "KANDLE_NAMESPACE")]
    pub namespace: Option<String>,
    /// kandle-runtime image for ModelDeployments that set no spec.runtime.image.
    #[arg(long, env = "KANDLE_RUNTIME_IMAGE", default_value = DEFAULT_RUNTIME_IMAGE)]
    pub runtime_image: String,
    /// Seconds pods may wait for room on the nodes (a cluster autoscaler adding one) before
    /// the ModelDeployment is reported Degraded (Unschedulable).
    #[arg(
        long,
        env = "KANDLE_UNSCHEDULABLE_GRACE_SECONDS",
        default_value_t = 300
    )]
    pub unschedulable_grace_seconds: u64,
    /// Folder prefixes `hostPath` model sources may name, comma-separated (default: none, so
    /// hostPath sources are refused). Whoever may create a ModelDeployment may mount these
    /// folders of any node into its pods.
    #[arg(long, env = "KANDLE_ALLOWED_HOST_PATHS", value_delimiter = ',')]
    pub allowed_host_paths: Vec<String>,
    /// How many ModelDeployments may roll out a change the operator itself caused (a new
    /// default runtime image or pod template) at once; the others wait their turn.
    #[arg(long, env = "KANDLE_MAX_CONCURRENT_UPGRADES", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_upgrades: u16,
    /// Requests per second the operator sends to the Kubernetes API on average (0: no limit);
    /// watches stay open and do not count once started.
    #[arg(long, env = "KANDLE_KUBE_API_QPS", default_value_t = DEFAULT_KUBE_API_QPS)]
    pub kube_api_qps: f32,
    /// Requests the operator may send at once after a quiet spell.
    #[arg(long, env = "KANDLE_KUBE_API_BURST", default_value_t = DEFAULT_KUBE_API_BURST, value_parser = clap::value_parser!(u32).range(1..))]
    pub kube_api_burst: u32,
    /// How many ModelDeployments are reconciled at once (0: no limit). A pass for one
    /// ModelDeployment never runs twice at the same time.
    #[arg(long, env = "KANDLE_RECONCILE_CONCURRENCY", default_value_t = DEFAULT_RECONCILE_CONCURRENCY)]
    pub reconcile_concurrency: u16,
    /// Seconds of load the autoscaler averages for ordinary changes (its stable window).
    #[arg(long, env = "KANDLE_AUTOSCALE_STABLE_WINDOW_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub autoscale_stable_window_seconds: u64,
    /// Seconds of load the autoscaler averages to catch a sudden jump (its panic window); it
    /// scales up at once when this window asks for twice the ready replicas.
    #[arg(long, env = "KANDLE_AUTOSCALE_PANIC_WINDOW_SECONDS", default_value_t = 6, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub autoscale_panic_window_seconds: u64,
    /// Port serving /metrics, /healthz and /readyz.
    #[arg(long, env = "KANDLE_METRICS_PORT", default_value_t = 8081)]
    pub metrics_port: u16,
    /// Run the controller only while holding a coordination.k8s.io Lease, so several replicas
    /// can run and a survivor takes over.
    #[arg(long, env = "KANDLE_LEADER_ELECTION")]
    pub leader_election: bool,
    /// Namespace of the leader Lease (default: the client's namespace, in a pod its own).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Name of the leader Lease.
    #[arg(long, default_value = CONTROLLER_NAME)]
    pub lease_name: String,
    /// Identity of this replica in the Lease and in events (default: the host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Log line format.
    #[arg(long, env = "KANDLE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl RunArgs {
    /// The operator settings these flags describe.
    pub fn operator_config(&self) -> OperatorConfig {
        OperatorConfig {
            runtime_image: self.runtime_image.clone(),
            namespace: self.namespace.clone(),
            unschedulable_grace: Duration::from_secs(self.unschedulable_grace_seconds),
            allowed_host_paths: self.allowed_host_paths.clone(),
            max_concurrent_upgrades: usize::from(self.max_concurrent_upgrades),
            reconcile_concurrency: self.reconcile_concurrency,
            autoscale: AutoscaleConfig {
                windows: Windows {
                    stable: Duration::from_secs(self.autoscale_stable_window_seconds),
                    panic: Duration::from_secs(
                        self.autoscale_panic_window_seconds
                            .min(self.autoscale_stable_window_seconds),
                    ),
                    ..Windows::default()
                },
                ..AutoscaleConfig::default()
            },
            ..OperatorConfig::default()
        }
    }

    /// The client's request rate these flags describe.
    pub fn client_limits(&self) -> Limits {
        Limits {
            qps: f64::from(self.kube_api_qps),
            burst: self.kube_api_burst,
        }
    }

    /// `--identity`, else the host name, else the controller's name.
    pub fn identity(&self) -> String {
        self.identity
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
                    .filter(|h| !h.is_empty())
            })
            .unwrap_or_else(|| CONTROLLER_NAME.to_string())
    }
}

/// Installs the tracing subscriber (filter from `RUST_LOG`, default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_is_the_default_and_flags_work_without_it() {
        let cli =
            Cli::try_parse_from(["kandle-operator", "--namespace", "ml", "--leader-election"])
                .unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.run.namespace.as_deref(), Some("ml"));
        assert!(cli.run.leader_election);
        assert_eq!(cli.run.metrics_port, 8081);
    }

    #[test]
    fn the_client_is_polite_by_default_and_tunable() {
        let cli = Cli::try_parse_from(["kandle-operator"]).unwrap();
        let limits = cli.run.client_limits();
        assert_eq!(limits.qps, f64::from(DEFAULT_KUBE_API_QPS));
        assert_eq!(limits.burst, DEFAULT_KUBE_API_BURST);
        assert_eq!(
            cli.run.operator_config().reconcile_concurrency,
            DEFAULT_RECONCILE_CONCURRENCY
        );
        let cli = Cli::try_parse_from([
            "kandle-operator",
            "--kube-api-qps",
            "20",
            "--kube-api-burst",
            "30",
            "--reconcile-concurrency",
            "4",
        ])
        .unwrap();
        assert_eq!(
            cli.run.client_limits(),
            Limits {
                qps: 20.0,
                burst: 30
            }
        );
        assert_eq!(cli.run.operator_config().reconcile_concurrency, 4);
        assert!(Cli::try_parse_from(["kandle-operator", "--kube-api-burst", "0"]).is_err());
    }

    #[test]
    fn crd_takes_no_flags() {
        let cli = Cli::try_parse_from(["kandle-operator", "crd"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Crd)));
        assert!(Cli::try_parse_from(["kandle-operator", "--namespace", "x", "crd"]).is_err());
    }
}
