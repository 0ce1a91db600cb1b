//! The receipt readers on arbitrary bytes: no panic, no abort, no runaway allocation. What
//! parses is written and read back to the same receipt (binary and JSON), and its hashes and
//! signature can be checked. The trace and opening readers run on the same bytes.
#![no_main]

use edgeproof::receipt::{trace_from_bytes, trace_to_bytes, Opening, Receipt};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Receipt::parse(data) {
        let _ = r.chain();
        let _ = r.check_signature();
        let json = r.to_json().expect("a parsed receipt has a JSON form");
        assert_eq!(Receipt::from_json(&json).expect("its JSON parses"), r);
        if r.version == 2 {
            let bytes = r.to_bytes().expect("a v2 receipt has a binary form");
            assert_eq!(Receipt::from_bytes(&bytes).expect("its binary form parses"), r);
        }
    }
    if let Ok(t) = trace_from_bytes(data) {
        assert_eq!(trace_from_bytes(&trace_to_bytes(&t)).expect("a written trace parses"), t);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(o) = Opening::from_json(s) {
            assert_eq!(Opening::from_json(&o.to_json()).expect("a written opening parses"), o);
        }
    }
});
