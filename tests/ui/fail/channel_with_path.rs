use asena_runtime::prelude::*;

// The contract has the path: declaring one again is a mistake.
#[websocket(channel = Contract, path = "/c")]
struct Service;

include!("../common/contract.rs");
