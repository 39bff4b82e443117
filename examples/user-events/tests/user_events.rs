//! The User Service from generated code, over real sockets: the generated client and the
//! server on the generated contract, the path parameter, validation on both sides (and
//! skipped with the option), and the functions over a socket the test connects itself.

use std::time::Duration;

use asena_client::{ClientError, DecodeError, Event, MessageOptions};
use asena_runtime::prelude::*;
use asena_tests::{TestServer, start};
use asena_user_events::{UserSignedUp, user_events};
use futures_util::SinkExt;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const WAIT: Duration = Duration::from_secs(5);

async fn server() -> anyhow::Result<TestServer> {
    start(asena_user_events::builder().websocket::<Broken>()).await
}

fn base(server: &TestServer) -> String {
    server.ws_url("")
}

async fn connect(
    server: &TestServer,
    user: &str,
) -> anyhow::Result<asena_client::Client<user_events::UserEvents>> {
    let params = user_events::Params {
        user_id: user.to_owned(),
    };
    Ok(user_events::client(&base(server), &params)
        .without_reconnect()
        .connect()
        .await?)
}

fn event(user: &str, email: &str) -> UserSignedUp {
    UserSignedUp {
        userId: user.to_owned(),
        email: email.to_owned(),
    }
}

/// Publishes `user`'s sign-up with `email` as `client` (checked), and asserts that the next
/// message that comes back to it is that event.
async fn assert_hears_own_event(
    client: &mut asena_client::Client<user_events::UserEvents>,
    user: &str,
    email: &str,
) -> anyhow::Result<()> {
    let sent = event(user, email);
    user_events::publish(client, &sent, MessageOptions::default()).await?;
    assert_eq!(next_message(client).await?, sent);
    Ok(())
}

/// The next message the client decodes, within [`WAIT`].
async fn next_message(
    client: &mut asena_client::Client<user_events::UserEvents>,
) -> anyhow::Result<UserSignedUp> {
    tokio::time::timeout(WAIT, async {
        while let Some(event) = client.next().await {
            if let Event::Message(message) = event {
                return Ok(message);
            }
        }
        anyhow::bail!("the client's stream ended")
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_event_reaches_every_connection_of_that_user_only() -> anyhow::Result<()> {
    let server = server().await?;
    let mut alice = connect(&server, "alice").await?;
    let mut alice_too = connect(&server, "alice").await?;
    let mut bob = connect(&server, "bob").await?;

    let signed_up = event("alice", "alice@example.com");
    user_events::publish(&alice, &signed_up, MessageOptions::default()).await?;
    assert_eq!(next_message(&mut alice).await?, signed_up);
    assert_eq!(next_message(&mut alice_too).await?, signed_up);

    // Bob's first message is his own event: alice's never reached /user/events/bob.
    assert_hears_own_event(&mut bob, "bob", "bob@example.com").await
}

#[tokio::test]
async fn the_generated_subscriber_hands_over_checked_messages() -> anyhow::Result<()> {
    let server = server().await?;
    let alice = connect(&server, "alice").await?;
    let mut listener = connect(&server, "alice").await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let subscription = tokio::spawn(async move {
        user_events::subscribe(&mut listener, MessageOptions::default(), |data| {
            let _ = tx.send(data);
        })
        .await;
    });
    let signed_up = event("alice", "a@example.com");
    user_events::publish(&alice, &signed_up, MessageOptions::default()).await?;
    let received = tokio::time::timeout(WAIT, rx.recv()).await?;
    assert_eq!(received.map(|r| r.ok()), Some(Some(signed_up)));
    subscription.abort();
    Ok(())
}

#[tokio::test]
async fn a_client_does_not_publish_what_breaks_the_document() -> anyhow::Result<()> {
    let server = server().await?;
    let mut alice = connect(&server, "alice").await?;
    let bad = event("", "not-an-email");
    let refused = user_events::publish(&alice, &bad, MessageOptions::default()).await;
    let Err(ClientError::Invalid(error)) = refused else {
        panic!("expected ClientError::Invalid, got {refused:?}");
    };
    assert_eq!(error.kind().code(), "constraint");
    assert!(error.message().contains("email"), "{error}");
    assert!(error.message().contains("userId"), "{error}");

    // Skipping the check sends it; the server checks on its own and answers with an error
    // frame naming the first broken rule, which the subscriber reports as an `Err`.
    let skip = MessageOptions {
        skip_message_validation: true,
    };
    user_events::publish(&alice, &bad, skip).await?;
    let answer = tokio::time::timeout(WAIT, alice.next()).await?;
    let Some(Event::Undecodable { text, .. }) = answer else {
        panic!("expected the server's error frame, got {answer:?}");
    };
    let frame: serde_json::Value = serde_json::from_str(&text)?;
    assert_eq!(frame["type"], "error");
    assert_eq!(frame["code"], "constraint");
    assert_eq!(frame["path"], "email");

    // The socket stays open: a valid event still goes through.
    assert_hears_own_event(&mut alice, "alice", "alice@example.com").await
}

#[tokio::test]
async fn the_server_refuses_what_breaks_the_document_before_the_handler() -> anyhow::Result<()> {
    let server = server().await?;
    let mut raw = asena_tests::Client::connect(&server.ws_url("/user/events/carol")).await?;
    raw.send_json(&json!({"userId": "carol"})).await?;
    let missing = raw.recv_json().await?;
    assert_eq!(
        (missing["code"].as_str(), missing["path"].as_str()),
        (Some("missing_field"), Some("."))
    );
    assert!(
        missing["message"]
            .as_str()
            .is_some_and(|m| m.contains("email")),
        "{missing}"
    );
    raw.send_json(&json!({"userId": "x".repeat(65), "email": "c@example.com"}))
        .await?;
    let long = raw.recv_json().await?;
    assert_eq!(
        (long["code"].as_str(), long["path"].as_str()),
        (Some("constraint"), Some("userId"))
    );
    // Nothing was broadcast: the next message is the answer to a valid event.
    raw.assert_echoed(&json!({"userId": "carol", "email": "c@example.com"}))
        .await
}

#[tokio::test]
async fn publish_on_and_subscribe_on_work_over_a_socket_the_application_owns() -> anyhow::Result<()>
{
    let server = server().await?;
    let (ws, _) = tokio_tungstenite::connect_async(server.ws_url("/user/events/dave")).await?;
    // Split: the application writes and reads the two halves from wherever it likes.
    let (mut sink, mut stream) = futures_util::StreamExt::split(ws);
    let signed_up = event("dave", "dave@example.com");
    user_events::publish_on(&mut sink, &signed_up, MessageOptions::default()).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let read = user_events::subscribe_on(&mut stream, MessageOptions::default(), move |data| {
        let _ = tx.send(data);
    });
    // After the first message, close; `subscribe_on` then returns the server's close frame.
    let close_after_first = async {
        let first = rx.recv().await;
        sink.send(WsMessage::Close(None)).await?;
        anyhow::Ok(first)
    };
    let (close, first) =
        tokio::time::timeout(WAIT, async { tokio::join!(read, close_after_first) }).await?;
    assert_eq!(first?.map(|r| r.ok()), Some(Some(signed_up)));
    assert_eq!(close?.map(|f| u16::from(f.code)), Some(1000));

    // A message that breaks a constraint is refused before sending, on this path too.
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url("/user/events/dave")).await?;
    let refused =
        user_events::publish_on(&mut ws, &event("dave", "nope"), MessageOptions::default()).await;
    assert!(
        matches!(refused, Err(ClientError::Invalid(_))),
        "{refused:?}"
    );
    ws.send(WsMessage::Close(None)).await?;
    Ok(())
}

/// Answers any message with an event that decodes but breaks the document's `email` format.
#[websocket(path = "/broken")]
#[derive(Debug)]
struct Broken;

asena_tests::impl_message_service!(Broken, |ws, _msg| {
    ws.send_json(&json!({"userId": "eve", "email": "not-an-email"}))?;
    Ok(())
});

/// The first message `subscribe_on` hands over from `/broken` with `options`.
async fn first_from_broken(
    server: &TestServer,
    options: MessageOptions,
) -> anyhow::Result<Result<UserSignedUp, DecodeError>> {
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url("/broken")).await?;
    ws.send(WsMessage::text("go")).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let reader = async {
        let _ = user_events::subscribe_on(&mut ws, options, |data| {
            let _ = tx.send(data);
        })
        .await;
    };
    tokio::select! {
        () = reader => anyhow::bail!("the socket ended before a message"),
        first = tokio::time::timeout(WAIT, rx.recv()) => first?.ok_or_else(|| anyhow::anyhow!("no message")),
    }
}

#[tokio::test]
async fn a_received_message_that_breaks_the_document_is_an_error_unless_skipped()
-> anyhow::Result<()> {
    let server = server().await?;
    let checked = first_from_broken(&server, MessageOptions::default()).await?;
    let error = checked.expect_err("the email format is checked");
    assert_eq!((error.kind().code(), error.path()), ("constraint", "email"));

    let skipped = first_from_broken(
        &server,
        MessageOptions {
            skip_message_validation: true,
        },
    )
    .await?;
    assert_eq!(skipped.ok(), Some(event("eve", "not-an-email")));
    Ok(())
}

#[tokio::test]
async fn a_container_bomb_costs_the_generated_server_one_pass() -> anyhow::Result<()> {
    // 10,001 nested arrays under a field: refused by the count before serde sees it, the
    // socket stays open and the next valid event goes through.
    let server = server().await?;
    let mut raw = asena_tests::Client::connect(&server.ws_url("/user/events/bomb")).await?;
    let bomb = format!(
        r#"{{"userId":"bomb","email":"b@example.com","x":{}{}}}"#,
        "[".repeat(10_001),
        "]".repeat(10_001)
    );
    raw.send_text(&bomb).await?;
    let answer = raw.recv_json().await?;
    assert_eq!(answer["code"], "too_many_containers", "{answer}");
    raw.assert_echoed(&json!({"userId": "bomb", "email": "b@example.com"}))
        .await
}
