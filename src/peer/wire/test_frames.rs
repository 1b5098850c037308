//! Test helpers shared by the codec's tests: raw frames, and the one-line form for a
//! malformed input and the exact error it must give.

/// A frame of message `id` with `payload`, its length prefix computed.
pub fn frame(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    v.push(id);
    v.extend_from_slice(payload);
    v
}

/// Only the length prefix and the id: enough for a length check to refuse the message.
pub fn len_only(len: u32, id: u8) -> Vec<u8> {
    let mut v = len.to_be_bytes().to_vec();
    v.push(id);
    v
}

/// One line per malformed input: the bytes and the exact error.
macro_rules! malformed {
    ($name:ident, $input:expr, $err:expr) => {
        #[test]
        fn $name() {
            assert_eq!($crate::peer::wire::decode(&$input), Err($err));
        }
    };
}

pub(crate) use malformed;
