//! The standalone emulator's options and loop, shared by `dropbox-emulator` and the
//! `coco-host emulator` convenience command.

use std::net::SocketAddr;
use std::time::Duration;

use crate::{Config, Emulator};

/// The app the demo and the README's examples use.
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
}

/// Serve until Ctrl-C; prints the base URL alone on stdout.
pub async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::single(args.seed, args.entries, &args.client_id, &args.client_secret);
    config.token_lifetime = Duration::from_secs(args.token_lifetime);
    let emu = Emulator::start(config, args.listen).await?;
    eprintln!(
        "Dropbox emulator on {} ({} entries, seed {}); app {} / {}. Ctrl-C to stop.",
        emu.base_url(),
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
