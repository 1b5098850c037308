//! The bencode codec against hand-made inputs: round trips, canonical form, and every
//! malformed or over-limit input refused with its error.

use super::*;
use proptest::prelude::*;

/// One line per malformed input: the bytes, the expected error kind and its offset.
macro_rules! malformed {
    ($name:ident, $input:expr, $offset:expr, $kind:expr) => {
        #[test]
        fn $name() {
            assert_eq!(
                decode($input),
                Err(DecodeError {
                    offset: $offset,
                    kind: $kind
                })
            );
        }
    };
}

malformed!(
    empty,
    b"",
    0,
    ErrorKind::UnexpectedEnd {
        expected: "a value"
    }
);
malformed!(
    truncated_int,
    b"i12",
    3,
    ErrorKind::UnexpectedEnd {
        expected: "a digit or 'e'"
    }
);
malformed!(
    truncated_string,
    b"5:abc",
    0,
    ErrorKind::StringTooLong {
        claimed: 5,
        available: 3
    }
);
malformed!(
    truncated_list,
    b"li1e",
    4,
    ErrorKind::UnexpectedEnd {
        expected: "a list item or 'e'"
    }
);
malformed!(
    truncated_dict,
    b"d1:a",
    4,
    ErrorKind::UnexpectedEnd {
        expected: "a value"
    }
);
malformed!(
    truncated_length,
    b"12",
    2,
    ErrorKind::UnexpectedEnd {
        expected: "a digit or ':'"
    }
);
malformed!(leading_zero_int, b"i03e", 1, ErrorKind::LeadingZero);
malformed!(leading_zero_len, b"03:abc", 0, ErrorKind::LeadingZero);
malformed!(negative_zero, b"i-0e", 2, ErrorKind::NegativeZero);
malformed!(empty_int, b"ie", 1, ErrorKind::EmptyInteger);
malformed!(minus_only, b"i-e", 2, ErrorKind::EmptyInteger);
malformed!(
    int_overflow,
    b"i9223372036854775808e",
    0,
    ErrorKind::IntegerOverflow
);
malformed!(
    int_neg_overflow,
    b"i-9223372036854775809e",
    0,
    ErrorKind::IntegerOverflow
);
malformed!(
    length_overflow,
    b"99999999999999999999999:x",
    0,
    ErrorKind::IntegerOverflow
);
malformed!(
    huge_length,
    b"9999999999:x",
    0,
    ErrorKind::StringTooLong {
        claimed: 9_999_999_999,
        available: 1
    }
);
malformed!(
    bad_byte_in_int,
    b"i1x2e",
    2,
    ErrorKind::UnexpectedByte {
        found: b'x',
        expected: "a digit or 'e'"
    }
);
malformed!(
    plus_sign,
    b"i+1e",
    1,
    ErrorKind::UnexpectedByte {
        found: b'+',
        expected: "a digit or 'e'"
    }
);
malformed!(
    unknown_type,
    b"x",
    0,
    ErrorKind::UnexpectedByte {
        found: b'x',
        expected: "'i', 'l', 'd' or a digit"
    }
);
malformed!(
    int_key,
    b"di1ei2ee",
    1,
    ErrorKind::UnexpectedByte {
        found: b'i',
        expected: "a string key"
    }
);
malformed!(unsorted, b"d1:bi1e1:ai2ee", 7, ErrorKind::UnsortedKey);
malformed!(duplicate, b"d1:ai1e1:ai2ee", 7, ErrorKind::DuplicateKey);
malformed!(trailing, b"i1eXY", 3, ErrorKind::TrailingData { extra: 2 });
malformed!(
    two_values,
    b"i1ei2e",
    3,
    ErrorKind::TrailingData { extra: 3 }
);

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let input = vec![b'l'; 100_000];
    let err = decode(&input).unwrap_err();
    assert_eq!(err.kind, ErrorKind::TooDeep { max: 64 });
    assert_eq!(err.offset, 64);
    // Exactly the limit is fine.
    let mut ok = vec![b'l'; 64];
    ok.extend(vec![b'e'; 64]);
    assert!(decode(&ok).is_ok());
}

#[test]
fn too_many_values() {
    let mut input = b"l".to_vec();
    for _ in 0..1000 {
        input.extend_from_slice(b"0:");
    }
    input.push(b'e');
    let limits = DecodeLimits {
        max_depth: 8,
        max_values: 100,
    };
    let err = decode_with(&input, limits).unwrap_err();
    assert_eq!(err.kind, ErrorKind::TooManyValues { max: 100 });
}

#[test]
fn raw_bytes_of_dicts_are_kept() {
    let input = b"d4:infod6:lengthi5e4:name1:xe3:zzzi0ee";
    let v = decode(input).unwrap();
    let info = v
        .as_dict()
        .unwrap()
        .get(b"info")
        .unwrap()
        .as_dict()
        .unwrap();
    assert_eq!(info.raw().unwrap(), b"d6:lengthi5e4:name1:xe");
    assert_eq!(v.encode(), input.to_vec());
}

#[test]
fn extremes_decode() {
    assert_eq!(
        decode(b"i-9223372036854775808e").unwrap(),
        Value::Int(i64::MIN)
    );
    assert_eq!(
        decode(b"i9223372036854775807e").unwrap(),
        Value::Int(i64::MAX)
    );
    assert_eq!(decode(b"i0e").unwrap(), Value::Int(0));
    assert_eq!(decode(b"0:").unwrap(), Value::from(&b""[..]));
}

#[test]
fn errors_read_well() {
    let e = decode(b"d1:bi1e1:ai2ee").unwrap_err();
    assert_eq!(
        e.to_string(),
        "dictionary keys not in sorted order at byte 7"
    );
    let e = decode(b"\x01").unwrap_err();
    assert_eq!(
        e.to_string(),
        "unexpected byte 0x01 ('i', 'l', 'd' or a digit expected) at byte 0"
    );
}

#[test]
fn built_dicts_encode_sorted() {
    let d = Dict::new()
        .with("zeta", 1i64)
        .with("alpha", "x")
        .with("mid", Value::List(vec![]));
    assert_eq!(
        Value::Dict(d).encode(),
        b"d5:alpha1:x3:midle4:zetai1ee".to_vec()
    );
}

fn arb_value() -> impl Strategy<Value = Value<'static>> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(Value::Int),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::List),
            proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 0..8),
                inner,
                0..8
            )
            .prop_map(|m| {
                let mut d = Dict::new();
                for (k, v) in m {
                    d.insert(k, v);
                }
                Value::Dict(d)
            }),
        ]
    })
}

proptest! {
    #[test]
    fn round_trip(v in arb_value()) {
        let bytes = v.encode();
        let back = decode(&bytes).unwrap();
        let again = back.encode();
        prop_assert_eq!(&again, &bytes);
        prop_assert_eq!(back.into_owned(), v);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&bytes);
    }
}
