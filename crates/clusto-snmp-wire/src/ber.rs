//! The little BER this daemon writes (INFORM acknowledgements, USM
//! reports) and the one structural walk it needs on received messages:
//! finding raw element slices that the typed parser does not hand out (a
//! PDU's variable bindings, echoed verbatim in a Response).

pub const INTEGER: u8 = 0x02;
pub const OCTET_STRING: u8 = 0x04;
pub const NULL: u8 = 0x05;
pub const OID: u8 = 0x06;
pub const SEQUENCE: u8 = 0x30;
pub const COUNTER32: u8 = 0x41;
pub const TIMETICKS: u8 = 0x43;
pub const GET_REQUEST: u8 = 0xa0;
pub const RESPONSE: u8 = 0xa2;
pub const INFORM: u8 = 0xa6;
pub const TRAP_V2: u8 = 0xa7;
pub const REPORT: u8 = 0xa8;

/// One element: tag, length, contents.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A signed INTEGER (also Counter32/TimeTicks with their own tag), in the
/// fewest octets two's complement allows.
pub fn int(tag: u8, v: i64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    tlv(tag, &bytes[start..])
}

pub fn octets(v: &[u8]) -> Vec<u8> {
    tlv(OCTET_STRING, v)
}

pub fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut body = Vec::new();
    let (first, rest) = match arcs {
        [a, b, rest @ ..] => (a * 40 + b, rest),
        [a] => (a * 40, &[][..]),
        [] => (0, &[][..]),
    };
    for arc in std::iter::once(first).chain(rest.iter().copied()) {
        let mut groups = vec![(arc & 0x7f) as u8];
        let mut v = arc >> 7;
        while v > 0 {
            groups.push((v & 0x7f) as u8 | 0x80);
            v >>= 7;
        }
        body.extend(groups.iter().rev());
    }
    tlv(OID, &body)
}

pub fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(SEQUENCE, &parts.concat())
}

/// One element read from `input`: its tag, contents and what follows it.
/// `None` on anything truncated or with an indefinite or absurd length.
pub fn read(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| acc << 8 | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The children of a constructed element's contents, in order.
pub fn children(mut content: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (tag, body, rest) = read(content)?;
        out.push((tag, body));
        content = rest;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_use_the_fewest_octets() {
        assert_eq!(int(INTEGER, 0), [2, 1, 0]);
        assert_eq!(int(INTEGER, 127), [2, 1, 127]);
        assert_eq!(int(INTEGER, 128), [2, 2, 0, 128]);
        assert_eq!(int(INTEGER, -1), [2, 1, 0xff]);
        assert_eq!(int(INTEGER, -129), [2, 2, 0xff, 0x7f]);
        assert_eq!(int(INTEGER, 4242), [2, 2, 0x10, 0x92]);
    }

    #[test]
    fn long_lengths_and_oids() {
        let big = tlv(OCTET_STRING, &[7; 300]);
        assert_eq!(&big[..4], [4, 0x82, 1, 44]);
        let (tag, body, rest) = read(&big).unwrap();
        assert_eq!((tag, body.len(), rest.len()), (4, 300, 0));
        assert_eq!(
            oid(&[1, 3, 6, 1, 6, 3, 15, 1, 1, 4, 0]),
            [6, 10, 43, 6, 1, 6, 3, 15, 1, 1, 4, 0]
        );
        assert_eq!(oid(&[1, 3, 6, 1, 4, 1, 9, 9, 215])[9..], [0x81, 0x57]);
    }

    #[test]
    fn truncated_input_reads_as_none() {
        assert_eq!(read(&[]), None);
        assert_eq!(read(&[4]), None);
        assert_eq!(read(&[4, 3, 1]), None);
        assert_eq!(read(&[4, 0x85, 0, 0, 0, 0, 1]), None);
        assert_eq!(read(&[4, 0x80]), None);
        assert_eq!(children(&[4, 1, 9, 4]), None);
    }
}
