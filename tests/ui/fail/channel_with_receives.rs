use asena_runtime::prelude::*;

// The contract has the messages: declaring them again is a mistake.
#[websocket(channel = Contract, receives = Message)]
struct Service;

include!("../common/contract.rs");
