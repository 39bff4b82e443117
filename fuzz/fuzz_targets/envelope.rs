//! A message from the Redis or NATS transport: the wire envelope decoded, re-encoded and routed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| asena_runtime::__fuzz::envelope(data));
