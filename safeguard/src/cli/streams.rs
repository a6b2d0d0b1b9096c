//! `safeguard streams`: the operator makes the streams and buckets.
//!
//! Why a command of its own: on the secured cluster no serving role may make
//! or change a stream (a role that could would also be able to shorten or
//! seal the history it must not delete), so the operator's credential makes
//! them once, before any role starts; `ops/cluster start` runs this.

use platform::config::NatsArgs;

#[derive(Debug, clap::Args)]
pub struct StreamsArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Also make a durable consumer of change notices for this dashboard
    /// (`sg-dashboard-NAME`), which it resumes from; repeat for several.
    #[arg(long = "dashboard")]
    pub dashboards: Vec<String>,
}

/// Makes whatever is missing and says what is there.
pub async fn run(args: StreamsArgs) -> anyhow::Result<()> {
    let client = platform::bus::connect(&args.nats).await?;
    let js = async_nats::jetstream::new(client);
    platform::bus::provision(&js, &args.nats.stream_settings()).await?;
    for dashboard in &args.dashboards {
        platform::bus::ensure_dashboard_consumer(&js, dashboard).await?;
        tracing::info!(consumer = %events::subjects::dashboard_consumer(dashboard), "dashboard consumer ready");
    }
    for name in [
        platform::bus::EVENTS_STREAM.to_owned(),
        platform::bus::AUDIT_STREAM.to_owned(),
        platform::bus::CHANGES_STREAM.to_owned(),
        format!("KV_{}", platform::bus::KEYS_BUCKET),
        format!("KV_{}", platform::bus::SIGNED_OUT_BUCKET),
    ] {
        let mut stream = js.get_stream(&name).await?;
        let info = stream.info().await?;
        tracing::info!(stream = %name, replicas = info.config.num_replicas, messages = info.state.messages, "ready");
    }
    Ok(())
}
