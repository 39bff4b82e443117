//! Client bytes into the frame decoder with permessage-deflate, fed in reads of a size the first byte picks and whole.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| asena_runtime::__fuzz::frame_decoder_deflate(data));
