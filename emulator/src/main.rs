//! `dropbox-emulator`: the local Dropbox alone, until Ctrl-C.

use clap::Parser;

#[derive(Parser)]
#[command(name = "dropbox-emulator", version, about = "A local Dropbox API for tests and demos (not for production)")]
struct Cli {
    #[command(flatten)]
    serve: dropbox_emulator::cli::ServeArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match dropbox_emulator::cli::serve(&cli.serve).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            std::process::ExitCode::FAILURE
        }
    }
}
