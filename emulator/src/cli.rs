//! The standalone emulator's options and loop, shared by `dropbox-emulator` and the
//! `coco-host emulator` convenience command.

use std::net::SocketAddr;
use std::time::Duration;

use crate::{Config, Emulator, Webhook};

/// The app the demo and the examples in docs/operator.md use.
pub const DEMO_CLIENT_ID: &str = "coco-demo-app";
pub const DEMO_CLIENT_SECRET: &str = "coco-demo-secret";

#[derive(clap::Args, Clone, Debug)]
pub struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1:8788")]
    pub listen: SocketAddr,
    /// Entries in the generated account.
    #[arg(long, default_value_t = 10_000)]
    pub entries: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, default_value = DEMO_CLIENT_ID)]
    pub client_id: String,
    #[arg(long, default_value = DEMO_CLIENT_SECRET)]
    pub client_secret: String,
    /// Access-token lifetime in seconds (Dropbox: 14400).
    #[arg(long, default_value_t = 14_400)]
    pub token_lifetime: u64,
    /// Accounts to emulate, each with `--entries` entries; `POST /__admin/login {"account": N}`
    /// picks who approves the next consent.
    #[arg(long, default_value_t = 1)]
    pub accounts: usize,
    /// Delay added to every API call, like a real round trip.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Send signed change notifications (Dropbox webhooks) to this URL.
    #[arg(long)]
    pub webhook: Option<String>,
}

/// Serve until Ctrl-C; prints the base URL alone on stdout.
pub async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let sizes = vec![args.entries; args.accounts.max(1)];
    let mut config = Config::accounts(args.seed, &sizes, &args.client_id, &args.client_secret);
    config.token_lifetime = Duration::from_secs(args.token_lifetime);
    let emu = Emulator::start(config, args.listen).await?;
    emu.set_latency(Duration::from_millis(args.latency_ms));
    if let Some(url) = &args.webhook {
        emu.set_webhook(Some(Webhook {
            url: url.clone(),
            app_secret: args.client_secret.clone(),
            attempts: 6,
            first_retry: Duration::from_millis(500),
        }));
    }
    eprintln!(
        "Dropbox emulator on {} ({} account(s) of {} entries, seed {}); app {} / {}. Ctrl-C to stop.",
        emu.base_url(),
        args.accounts.max(1),
        args.entries,
        args.seed,
        args.client_id,
        args.client_secret
    );
    println!("{}", emu.base_url());
    tokio::signal::ctrl_c().await?;
    emu.stop().await;
    Ok(())
}
