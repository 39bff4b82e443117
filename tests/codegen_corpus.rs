//! Generated code from public AsyncAPI 3 documents of real WebSocket APIs
//! (`asena-codegen/tests/corpus/`, with their license) and from the bench server's document:
//! every example payload — the document's own, or one made from the schema where a message
//! has none — round-trips through the generated types (decode, check the constraints,
//! encode, decode again: equal), and the Gemini contract, served, takes its path parameter
//! only from its `enum`.

/// The code generated from the documents (`build.rs`).
#[allow(dead_code)]
mod generated {
    asena_tests::generated!(
        gemini => "codegen_gemini.rs",
        kraken_filter => "codegen_kraken_filter.rs",
        kraken_channels => "codegen_kraken_channels.rs",
        slack => "codegen_slack.rs",
        social_frontend => "codegen_social_frontend.rs",
        bench_server => "codegen_bench_server.rs",
    );
}

use std::fmt::Debug;

use asena_protocol::Checked;
use asena_protocol::channel::decode_json;
use asena_runtime::prelude::*;
use asena_tests::{start, upgrade_request};
use generated::gemini::market_data_v1;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Round-trips each of `examples` through `T`; returns how many did, and the ones the
/// generated type refuses (with why).
fn round_trip<T>(examples: &[&str]) -> (usize, Vec<(String, String)>)
where
    T: DeserializeOwned + Serialize + Checked + PartialEq + Debug,
{
    let mut passed = 0;
    let mut refused = Vec::new();
    for example in examples {
        let decoded = decode_json::<T>(example.as_bytes()).and_then(|m| m.check().map(|()| m));
        match decoded {
            Ok(decoded) => {
                let encoded = serde_json::to_string(&decoded).expect("generated types encode");
                let again: T = decode_json(encoded.as_bytes())
                    .unwrap_or_else(|e| panic!("its own encoding {encoded} does not decode: {e}"));
                assert_eq!(again, decoded, "{example} → {encoded}");
                passed += 1;
            }
            Err(error) => refused.push(((*example).to_owned(), error.to_string())),
        }
    }
    (passed, refused)
}

/// Round-trips both directions of an endpoint module.
macro_rules! endpoint {
    ($($module:ident)::+) => {{
        use $($module)::+ as m;
        let (a, mut refused) = round_trip::<m::ClientMessage>(m::CLIENT_EXAMPLES);
        let (b, more) = round_trip::<m::ServerMessage>(m::SERVER_EXAMPLES);
        refused.extend(more);
        (a + b, refused)
    }};
}

fn sum(parts: &[(usize, Vec<(String, String)>)]) -> (usize, Vec<(String, String)>) {
    let passed = parts.iter().map(|p| p.0).sum();
    let refused = parts.iter().flat_map(|p| p.1.clone()).collect();
    (passed, refused)
}

#[test]
fn every_example_payload_round_trips() {
    let results = [
        ("gemini", endpoint!(generated::gemini::market_data_v1)),
        (
            "kraken (reply filter)",
            endpoint!(generated::kraken_filter::currency_exchange),
        ),
        (
            "kraken (channels)",
            endpoint!(generated::kraken_channels::root),
        ),
        ("slack", endpoint!(generated::slack::root)),
        (
            "social media frontend",
            sum(&[
                endpoint!(generated::social_frontend::like_comment),
                endpoint!(generated::social_frontend::update_comment_like),
            ]),
        ),
        (
            "bench server",
            sum(&[
                endpoint!(generated::bench_server::bench_socket),
                endpoint!(generated::bench_server::typed_bench_socket),
                endpoint!(generated::bench_server::room_bench_socket),
            ]),
        ),
    ];
    for (document, (passed, refused)) in &results {
        eprintln!(
            "{document}: {passed} payloads round-trip, {} refused",
            refused.len()
        );
        assert!(*passed > 0, "{document}: no payload round-trips");
        for (example, why) in refused {
            // The Kraken documents' `subscriptionStatus` examples write `pair` as a string
            // where their schema says a list of strings: refusing them is right. (Their
            // payload is an untagged `oneOf` of two objects, whose error names no field.)
            let known = document.starts_with("kraken")
                && example.contains(r#""event":"subscriptionStatus""#)
                && example.contains(r#""pair":"XBT/"#)
                && why.contains("did not match any variant of untagged enum SubscriptionStatus");
            assert!(
                known,
                "{document}: the generated type refuses {example}: {why}"
            );
        }
    }
    // Slack's document has 47 messages, each with a payload made from its schema at least.
    assert!(results[3].1.0 >= 47, "slack: {}", results[3].1.0);
}

#[test]
fn a_payload_that_breaks_a_constraint_is_refused_with_its_path() {
    // Kraken's `pair` items must match `[A-Z\s]+\/[A-Z\s]+`.
    use generated::kraken_channels::root::ClientMessage;
    let subscribe =
        br#"{"event":"subscribe","pair":["XBT/EUR","xbt-eur"],"subscription":{"name":"ticker"}}"#;
    let message: ClientMessage = decode_json(subscribe).expect("the shape is right");
    let error = message
        .check()
        .expect_err("the second pair breaks the pattern");
    assert_eq!(
        (error.kind().code(), error.path()),
        ("constraint", "pair[1]")
    );
    // An event the channel does not have is refused by its tag.
    let unknown = decode_json::<ClientMessage>(br#"{"event":"dance"}"#).expect_err("no such event");
    assert_eq!(unknown.kind().code(), "unknown_variant");
}

/// A server on the generated Gemini contract: it sends the document's first example to each
/// connection.
#[websocket(channel = market_data_v1::MarketDataV1)]
#[derive(Debug)]
struct Gemini;

impl WebSocketService for Gemini {
    type Data = ();

    async fn on_open(&self, ws: &Socket<Self>) -> Result<()> {
        let example: market_data_v1::ServerMessage =
            serde_json::from_str(market_data_v1::SERVER_EXAMPLES[0])?;
        ws.send(&example)?;
        Ok(())
    }

    async fn on_message(
        &self,
        _: &Socket<Self>,
        message: market_data_v1::ClientMessage,
    ) -> Result<()> {
        match message {}
    }
}

#[tokio::test]
async fn the_gemini_path_parameter_comes_from_its_enum() -> anyhow::Result<()> {
    let server = start(asena_tests::isolated().websocket::<Gemini>()).await?;
    let params = market_data_v1::Params {
        symbol: market_data_v1::Symbol::Btcusd,
    };
    let mut client = market_data_v1::client(&server.ws_url(""), &params)
        .without_reconnect()
        .connect()
        .await?;
    assert!(
        client.url().ends_with("/v1/marketdata/btcusd"),
        "{}",
        client.url()
    );
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), client.next()).await?;
    assert!(
        matches!(first, Some(asena_client::Event::Message(_))),
        "{first:?}"
    );

    let (status, _) = upgrade_request(server.addr, "/v1/marketdata/btcusd", &[]).await?;
    assert_eq!(status, 101);
    let (status, refused) = upgrade_request(server.addr, "/v1/marketdata/dogeusd", &[]).await?;
    assert_eq!(status, 400, "a symbol outside the enum: {}", refused.body);
    Ok(())
}
