//! `wss://`: a real TLS WebSocket server on 127.0.0.1 (a self-signed certificate made by
//! rcgen, rustls behind tokio-rustls, tungstenite speaking the channel's JSON) and typed
//! clients that trust its certificate, or do not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::error::Error as _;
use std::net::SocketAddr;
use std::sync::Arc;

use asena_client::{Channel, Client, ClientError, Event};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, pki_types::PrivateKeyDer};
use tokio_tungstenite::tungstenite::Message;

mod support;

use support::WAIT;

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema, garde::Validate)]
#[serde(tag = "type", rename_all = "snake_case")]
#[garde(allow_unvalidated)]
enum EchoIn {
    Say { text: String },
}

#[derive(Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
enum EchoOut {
    Said { text: String },
}

/// The contract, written by hand: the client needs `asena-protocol` only, no server.
struct Echo;

impl Channel for Echo {
    const PATH: &'static str = "/echo";
    const NAME: &'static str = "Echo";
    type Params = ();
    type In = EchoIn;
    type Out = EchoOut;
}

/// A self-signed certificate for 127.0.0.1: (DER, PEM, the key's PKCS#8 DER).
fn certificate() -> (Vec<u8>, String, Vec<u8>) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    (
        certified.cert.der().to_vec(),
        certified.cert.pem(),
        certified.signing_key.serialize_der(),
    )
}

/// A TLS WebSocket server on 127.0.0.1:0 answering every `say` with `said`.
async fn tls_server(cert: Vec<u8>, key: Vec<u8>) -> (SocketAddr, JoinHandle<()>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.into()], PrivateKeyDer::Pkcs8(key.into()))
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    let Message::Text(text) = message else {
                        continue;
                    };
                    let Ok(EchoIn::Say { text }) = serde_json::from_str(text.as_str()) else {
                        continue;
                    };
                    let reply = serde_json::to_string(&EchoOut::Said { text }).unwrap();
                    if ws.send(Message::text(reply)).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, task)
}

async fn round_trip(client: &mut Client<Echo>, text: &str) {
    client
        .send(&EchoIn::Say { text: text.into() })
        .await
        .unwrap();
    match timeout(WAIT, client.next())
        .await
        .expect("no event in time")
    {
        Some(Event::Message(out)) => assert_eq!(out, EchoOut::Said { text: text.into() }),
        other => panic!("expected a message, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trusting_the_root_talks_over_wss() {
    let (der, pem, key) = certificate();
    let (addr, server) = tls_server(der.clone(), key).await;
    let base = format!("wss://{addr}");

    // PEM, as a CA's file usually is.
    let mut client = Client::<Echo>::builder(&base)
        .add_root_certificate(pem)
        .connect()
        .await
        .unwrap();
    assert_eq!(client.url(), format!("{base}/echo"));
    round_trip(&mut client, "over TLS").await;
    client.close().await.unwrap();

    // DER works the same; `https://` is taken as `wss://`.
    let mut client = Client::<Echo>::builder(format!("https://{addr}"))
        .add_root_certificate(der)
        .connect()
        .await
        .unwrap();
    round_trip(&mut client, "again").await;
    client.close().await.unwrap();
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_not_trusting_the_root_fails_with_a_tls_error() {
    let (der, _, key) = certificate();
    let (addr, server) = tls_server(der, key).await;
    let error = Client::<Echo>::builder(format!("wss://{addr}"))
        .connect_timeout(WAIT)
        .connect()
        .await
        .expect_err("an untrusted certificate is refused");
    let ClientError::Tls { url, .. } = &error else {
        panic!("expected a TLS error, got {error:?}");
    };
    assert_eq!(url, &format!("wss://{addr}/echo"));
    let text = error.to_string();
    assert!(text.starts_with("TLS handshake with wss://"), "{text}");
    assert!(
        text.contains("invalid peer certificate") && text.contains("UnknownIssuer"),
        "{text}"
    );
    assert!(error.source().is_some());
    server.abort();
}

#[tokio::test]
async fn a_root_that_does_not_parse_is_refused_before_connecting() {
    // Nothing listens here: the certificate is checked before any I/O.
    let client = || Client::<Echo>::builder("wss://127.0.0.1:9");
    for (builder, what) in [
        (
            client().add_root_certificate(
                "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
            ),
            "a bad PEM is refused",
        ),
        (
            client().add_root_certificate(b"not DER".to_vec()),
            "bad DER is refused",
        ),
    ] {
        let error = builder.connect().await.expect_err(what);
        assert!(
            matches!(error, ClientError::BadCertificate { .. }),
            "{what}: {error:?}"
        );
    }
}
