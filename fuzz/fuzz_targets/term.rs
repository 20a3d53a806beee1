//! Erlang terms as distribution messages carry them: decode anything, and what decodes
//! encodes back to something that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_core::proto::term::Term;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = Term::decode(data)
        && !format!("{t:?}").contains("Other")
        && !format!("{t:?}").contains("NaN")
    {
        assert_eq!(Term::decode(&t.encode()), Ok(t));
    }
});
