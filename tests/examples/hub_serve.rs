//! Serves a model folder as one repository of a local Hugging Face Hub (the test server of
//! `kandle_tests::hub_server`), for the fetch benchmark: `bench/fetch.sh` points
//! `kandle-runtime fetch hf` and `huggingface_hub` at it.
//!
//! `cargo run -p kandle-tests --example hub_serve -- --dir DIR --repo ORG/NAME --commit SHA`
//! prints the server's URL on the first line, then serves until killed.

use std::path::PathBuf;

use clap::Parser;
use kandle_tests::hub_server::{HubRepo, HubServer};

#[derive(Parser)]
struct Args {
    /// The model folder to serve.
    #[arg(long)]
    dir: PathBuf,
    /// Repository id it is served as.
    #[arg(long)]
    repo: String,
    /// The commit it is served at (40 hex characters); `main` names it too.
    #[arg(long)]
    commit: String,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let repo = HubRepo::from_dir(&args.repo, &args.commit, &args.dir).with_branch("main");
    let server = HubServer::start(vec![repo]).await;
    println!("{}", server.url());
    std::future::pending::<()>().await;
}
