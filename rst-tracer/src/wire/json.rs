//! Writing JSON text: the [`WriteJson`] trait the output records implement, objects written field
//! by field, and the values they hold.
//!
//! Keys are literals that need no escaping, numbers go through `itoa` and `zmij` (serde_json's
//! own float formatter, so the digits are the same), and strings are checked for characters to
//! escape in one pass before they are copied. Through serde_json every key was escaped byte by
//! byte and every address and time went through `core::fmt`, which cost twice the whole
//! pipeline.

use std::{io::Write, net::IpAddr};

/// A value that writes itself as JSON text.
pub trait WriteJson {
    /// Appends this value's JSON text to `out`.
    fn write_json(&self, out: &mut Vec<u8>);
}

/// A JSON object being written: `{`, then each field with its key, then [`Object::end`].
pub struct Object<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Object<'a> {
    /// Opens an object in `out`.
    pub fn begin(out: &'a mut Vec<u8>) -> Object<'a> {
        out.push(b'{');
        Object { out, empty: true }
    }

    /// Writes a field. `key` is a literal of the schema: letters, digits and `_` only, so it is
    /// written as it is.
    #[inline(always)]
    pub fn field<V: WriteJson + ?Sized>(&mut self, key: &'static str, value: &V) -> &mut Self {
        const MAX_KEY: usize = 32;
        let key = key.as_bytes();
        debug_assert!(
            key.len() <= MAX_KEY && !key.iter().copied().any(needs_escape),
            "key {key:?}"
        );
        // `,"key":` as one piece, without the comma before the first field. Inlined, with the
        // key a literal and the chain of fields known, the piece and its length are constants:
        // one copy of known length instead of four small writes.
        let mut piece = [0; MAX_KEY + 4];
        piece[..2].copy_from_slice(b",\"");
        piece[2..2 + key.len()].copy_from_slice(key);
        piece[2 + key.len()..4 + key.len()].copy_from_slice(b"\":");
        let from = usize::from(self.empty);
        self.empty = false;
        self.out.extend_from_slice(&piece[from..4 + key.len()]);
        value.write_json(self.out);
        self
    }

    /// Closes the object.
    pub fn end(&mut self) {
        self.out.push(b'}');
    }
}

/// Implements [`WriteJson`] for a struct as an object of the fields named, in that order, each
/// under its own name (as `#[derive(Serialize)]` would write it).
macro_rules! json_object {
    ($t:ty { $($field:ident),* $(,)? }) => {
        impl WriteJson for $t {
            fn write_json(&self, out: &mut Vec<u8>) {
                Object::begin(out)$(.field(stringify!($field), &self.$field))*.end();
            }
        }
    };
}
pub(crate) use json_object;

/// Whether JSON needs `b` escaped inside a string.
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Writes `s` as a JSON string, escaped as serde_json escapes: `\"`, `\\`, `\b`, `\f`, `\n`,
/// `\r`, `\t`, other control characters as `\u00xx`, everything else as it is.
fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.push(b'"');
    if any_needs_escape(bytes) {
        write_escaped(out, bytes);
    } else {
        out.extend_from_slice(bytes);
    }
    out.push(b'"');
}

/// Lowercase hex digits by value.
pub(crate) const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Whether any of `bytes` needs escaping. Escapes are rare, so the common case is one pass
/// over 16-byte blocks with no early exit inside a block, which the compiler vectorises; a
/// string shorter than a block is checked as a block padded with spaces.
fn any_needs_escape(bytes: &[u8]) -> bool {
    const BLOCK: usize = 16;
    let escapes = |block: &[u8]| block.iter().fold(false, |any, &b| any | needs_escape(b));
    if bytes.len() < BLOCK {
        let mut block = [b' '; BLOCK];
        block[..bytes.len()].copy_from_slice(bytes);
        return escapes(&block);
    }
    // Whole blocks, then the last BLOCK bytes for what the whole blocks left.
    bytes.chunks_exact(BLOCK).any(escapes) || escapes(&bytes[bytes.len() - BLOCK..])
}

fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        out.extend_from_slice(&bytes[run..i]);
        run = i + 1;
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX_DIGITS[usize::from(b >> 4)],
                HEX_DIGITS[usize::from(b & 0xf)],
            ]),
        }
    }
    out.extend_from_slice(&bytes[run..]);
}

/// A name from the schema's fixed vocabulary (record types, hooks, directions, origins, finding
/// codes, flag and option names): ASCII letters, digits, `_`, `-` and `|`, written without the
/// escape check.
#[derive(Clone, Copy, Debug)]
pub struct Name<'a>(pub &'a str);

impl WriteJson for Name<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        debug_assert!(!self.0.bytes().any(needs_escape), "name {:?}", self.0);
        out.push(b'"');
        out.extend_from_slice(self.0.as_bytes());
        out.push(b'"');
    }
}

impl WriteJson for str {
    fn write_json(&self, out: &mut Vec<u8>) {
        write_str(out, self);
    }
}

impl WriteJson for String {
    fn write_json(&self, out: &mut Vec<u8>) {
        write_str(out, self);
    }
}

impl WriteJson for bool {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if *self { b"true" } else { b"false" });
    }
}

// Integers in decimal, as serde_json writes them (it uses itoa too).
macro_rules! write_json_integers {
    ($($t:ty),*) => {$(
        impl WriteJson for $t {
            fn write_json(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(itoa::Buffer::new().format(*self).as_bytes());
            }
        }
    )*};
}
write_json_integers!(u8, u16, u32, u64, usize, i32, i64);

impl WriteJson for f64 {
    /// As serde_json writes it: the shortest digits that read back the same, `null` when not
    /// finite. Whole numbers below 1e15 (most microsecond counts) are the integer and `.0`,
    /// written without the float formatter.
    fn write_json(&self, out: &mut Vec<u8>) {
        let v = *self;
        let whole = v as u64;
        if whole as f64 == v && v < 1e15 && v.is_sign_positive() {
            out.extend_from_slice(itoa::Buffer::new().format(whole).as_bytes());
            out.extend_from_slice(b".0");
        } else if v.is_finite() {
            out.extend_from_slice(zmij::Buffer::new().format_finite(v).as_bytes());
        } else {
            out.extend_from_slice(b"null");
        }
    }
}

impl WriteJson for IpAddr {
    /// As text (`10.0.0.1`, `2001:db8::1`).
    fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'"');
        match self {
            IpAddr::V4(a) => {
                // Room for the longest, `255.255.255.255`, written in place and cut to length:
                // no copy of a length known only at run time.
                let start = out.len();
                out.extend_from_slice(&[0; 15]);
                let text = &mut out[start..];
                let mut len = 0;
                for (i, octet) in a.octets().into_iter().enumerate() {
                    if i > 0 {
                        text[len] = b'.';
                        len += 1;
                    }
                    if octet >= 100 {
                        text[len] = b'0' + octet / 100;
                        len += 1;
                    }
                    if octet >= 10 {
                        text[len] = b'0' + octet / 10 % 10;
                        len += 1;
                    }
                    text[len] = b'0' + octet % 10;
                    len += 1;
                }
                out.truncate(start + len);
            }
            // Hex digits, colons and dots: nothing to escape.
            IpAddr::V6(a) => write!(out, "{a}").expect("a Vec takes every byte"),
        }
        out.push(b'"');
    }
}

impl<T: WriteJson + ?Sized> WriteJson for &T {
    fn write_json(&self, out: &mut Vec<u8>) {
        (**self).write_json(out);
    }
}

impl<T: WriteJson> WriteJson for Option<T> {
    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Some(v) => v.write_json(out),
            None => out.extend_from_slice(b"null"),
        }
    }
}

impl<T: WriteJson> WriteJson for [T] {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        for (i, v) in self.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            v.write_json(out);
        }
        out.push(b']');
    }
}

impl<T: WriteJson> WriteJson for Vec<T> {
    fn write_json(&self, out: &mut Vec<u8>) {
        self.as_slice().write_json(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(v: &(impl WriteJson + ?Sized)) -> String {
        let mut out = Vec::new();
        v.write_json(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let every_ascii: String = (0u8..=0x7f).map(char::from).collect();
        for s in [
            every_ascii.as_str(),
            "plain",
            "",
            "a \"quoted\" \\ path\n",
            "µs → 2001:db8::1",
        ] {
            assert_eq!(json(s), serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn numbers_and_addresses_as_serde_json_writes_them() {
        let mut floats = vec![0.0, -0.0, 370.0, 12.5, 1e-7, 1.0 / 3.0, -2.0, f64::NAN];
        floats.extend([
            f64::INFINITY,
            9_007_199_254_740_992.0,
            999_999_999_999_999.9,
        ]);
        for exp in 0..18 {
            let p = 10f64.powi(exp);
            floats.extend([p - 1.0, p, p + 1.0, p * 2.5, p / 1000.0 + 0.001]);
        }
        for f in floats {
            assert_eq!(json(&f), serde_json::to_string(&f).unwrap(), "{f}");
        }
        for n in [0, 7, 10, 99, 100, 12_345, 1 << 40, u64::MAX] {
            assert_eq!(json(&n), n.to_string());
        }
        for n in [0, -1, -100, i64::MIN, i64::MAX] {
            assert_eq!(json(&n), n.to_string());
        }
        for a in [
            "0.0.0.0",
            "255.255.255.255",
            "9.99.100.199",
            "255.10.0.1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "::",
        ] {
            let a: IpAddr = a.parse().unwrap();
            assert_eq!(json(&a), serde_json::to_string(&a).unwrap());
        }
    }

    #[test]
    fn objects_arrays_and_nulls() {
        let mut out = Vec::new();
        Object::begin(&mut out)
            .field("a", &1u8)
            .field("b", &None::<u32>)
            .field("c", &vec![true, false])
            .field("d", &Vec::<u8>::new())
            .end();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":1,"b":null,"c":[true,false],"d":[]}"#
        );
    }
}
