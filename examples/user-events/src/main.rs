//! `cargo run -p asena-user-events -- serve` serves the User Service on 127.0.0.1:3001;
//! `cargo run -p asena-user-events -- publish user123 user@example.com` publishes one event
//! with the generated client and prints what the server sends back.

use asena_client::MessageOptions;
use asena_user_events::{UserSignedUp, user_events};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The port.
    #[arg(long, default_value_t = 3001)]
    port: u16,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serves the User Service.
    Serve,
    /// Publishes one `UserSignedUp` as `user_id` and prints the server's echo.
    Publish { user_id: String, email: String },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve => {
            let app = asena_user_events::builder().build().await?;
            eprintln!(
                "user events on ws://127.0.0.1:{}/user/events/{{userId}}",
                cli.port
            );
            app.serve(format!("127.0.0.1:{}", cli.port)).await?;
        }
        Command::Publish { user_id, email } => {
            let params = user_events::Params {
                user_id: user_id.clone(),
            };
            let mut client = user_events::client(&format!("ws://127.0.0.1:{}", cli.port), &params)
                .without_reconnect()
                .connect()
                .await?;
            let event = UserSignedUp {
                userId: user_id,
                email,
            };
            user_events::publish(&client, &event, MessageOptions::default()).await?;
            let mut echo = None;
            while echo.is_none() {
                let Some(event) = client.next().await else {
                    break;
                };
                if let asena_client::Event::Message(message) = event {
                    echo = Some(message);
                }
            }
            eprintln!("the server sent: {echo:?}");
            client.close().await?;
        }
    }
    Ok(())
}
