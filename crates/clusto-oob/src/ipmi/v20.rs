//! RMCP+ (IPMI 2.0) sessions: Open Session, the four RAKP messages, then
//! every message encrypted (AES-CBC-128) and signed (HMAC) with keys
//! derived from the session integrity key. Cipher suite 17 (SHA-256) is
//! proposed first; a BMC that refuses it gets suite 3 (SHA-1).

use aes::Aes128;
use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt};
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::Sha256;

use super::link::Link;
use super::wire::RMCP_HEADER;
use super::{Bmc, IpmiError, Protocol, random, random_u32};

const FORMAT_RMCPP: u8 = 0x06;
const OPEN_SESSION_REQUEST: u8 = 0x10;
const OPEN_SESSION_RESPONSE: u8 = 0x11;
const RAKP1: u8 = 0x12;
const RAKP2: u8 = 0x13;
const RAKP3: u8 = 0x14;
const RAKP4: u8 = 0x15;
/// An IPMI message, encrypted and authenticated.
const SECURED_IPMI: u8 = 0xc0;
/// RAKP1's "name-only lookup" bit: the user is found by name alone.
const NAME_ONLY: u8 = 0x10;

/// The hash a cipher suite is built on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alg {
    Sha1,
    Sha256,
}

impl Alg {
    fn suite(self) -> u8 {
        match self {
            Alg::Sha1 => 3,
            Alg::Sha256 => 17,
        }
    }

    /// Authentication, integrity and confidentiality algorithm numbers.
    fn algorithms(self) -> [u8; 3] {
        match self {
            Alg::Sha1 => [0x01, 0x01, 0x01],
            Alg::Sha256 => [0x03, 0x04, 0x01],
        }
    }

    /// Bytes of the integrity check values (RAKP4's and each message's).
    fn icv_len(self) -> usize {
        match self {
            Alg::Sha1 => 12,
            Alg::Sha256 => 16,
        }
    }

    fn mac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            // HMAC takes keys of any length; the error arm is unreachable.
            let Ok(mut m) = <M as KeyInit>::new_from_slice(key) else {
                return Vec::new();
            };
            for p in parts {
                m.update(p);
            }
            m.finalize().into_bytes().to_vec()
        }
        match self {
            Alg::Sha1 => run::<Hmac<Sha1>>(key, parts),
            Alg::Sha256 => run::<Hmac<Sha256>>(key, parts),
        }
    }
}

pub struct V20 {
    alg: Alg,
    console_id: u32,
    managed_id: u32,
    seq: u32,
    k1: Vec<u8>,
    k2: [u8; 16],
}

/// Status codes Open Session answers when it does not like the suite.
fn suite_refused(status: u8) -> bool {
    matches!(status, 0x04 | 0x05 | 0x06 | 0x07 | 0x10 | 0x11)
}

fn status_text(status: u8) -> &'static str {
    match status {
        0x01 => "insufficient resources to create a session",
        0x04 => "invalid authentication algorithm",
        0x05 => "invalid integrity algorithm",
        0x09 => "invalid role",
        0x0a => "unauthorized role or privilege level requested",
        0x0b => "insufficient resources at the requested role",
        0x0c => "invalid name length",
        0x0d => "unauthorized name",
        0x0f => "invalid integrity check value",
        0x10 => "invalid confidentiality algorithm",
        0x11 => "no cipher suite matches the proposed algorithms",
        _ => "refused",
    }
}

fn frame(payload_type: u8, session_id: u32, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut d = RMCP_HEADER.to_vec();
    d.extend_from_slice(&[FORMAT_RMCPP, payload_type]);
    d.extend_from_slice(&session_id.to_le_bytes());
    d.extend_from_slice(&seq.to_le_bytes());
    d.extend_from_slice(&(payload.len() as u16).to_le_bytes());
    d.extend_from_slice(payload);
    d
}

/// An RMCP+ datagram's payload type, session id, sequence and payload.
fn parse(d: &[u8]) -> Option<(u8, u32, u32, &[u8])> {
    let rest = d.strip_prefix(&RMCP_HEADER[..2])?;
    let [_, 0x07, FORMAT_RMCPP, ptype, rest @ ..] = rest else {
        return None;
    };
    let (sid, rest) = rest.split_first_chunk::<4>()?;
    let (seq, rest) = rest.split_first_chunk::<4>()?;
    let (len, rest) = rest.split_first_chunk::<2>()?;
    let payload = rest.get(..u16::from_le_bytes(*len) as usize)?;
    Some((
        *ptype,
        u32::from_le_bytes(*sid),
        u32::from_le_bytes(*seq),
        payload,
    ))
}

/// A pre-session exchange: the payload of the answer of type `want`
/// whose tag and console session id match.
async fn handshake(
    link: &Link,
    step: &'static str,
    ptype: u8,
    payload: &[u8],
    want: u8,
    console_id: u32,
) -> Result<Vec<u8>, IpmiError> {
    let datagram = frame(ptype, 0, 0, payload);
    let tag = payload[0];
    link.exchange(step, &datagram, |d| {
        let (t, _, _, p) = parse(d)?;
        let ok = t == want && p.len() >= 8 && p[0] == tag && p[4..8] == console_id.to_le_bytes();
        // A refusal may come without the rest of the message.
        let refused = t == want && p.len() >= 2 && p[0] == tag && p[1] != 0;
        (ok || refused).then(|| p.to_vec())
    })
    .await
}

pub async fn establish(link: &Link, bmc: &Bmc, privilege: u8) -> Result<V20, IpmiError> {
    let console_id = random_u32();
    let (alg, managed_id) = match open(link, Alg::Sha256, console_id, privilege).await? {
        Ok(id) => (Alg::Sha256, id),
        Err(_) => match open(link, Alg::Sha1, console_id, privilege).await? {
            Ok(id) => (Alg::Sha1, id),
            Err(status) => {
                return Err(IpmiError::NoCommonAuth {
                    addr: link.addr,
                    offered: format!("neither cipher suite 17 nor 3: {}", status_text(status)),
                });
            }
        },
    };
    rakp(
        link,
        bmc,
        alg,
        console_id,
        managed_id,
        NAME_ONLY | privilege,
    )
    .await
}

/// Open Session with `alg`'s suite: the BMC's session id, or the status
/// refusing the suite.
async fn open(
    link: &Link,
    alg: Alg,
    console_id: u32,
    privilege: u8,
) -> Result<Result<u32, u8>, IpmiError> {
    let step = "RMCP+ Open Session";
    let [a, i, c] = alg.algorithms();
    let mut p = vec![alg.suite(), privilege, 0, 0];
    p.extend_from_slice(&console_id.to_le_bytes());
    for (kind, algorithm) in [(0u8, a), (1, i), (2, c)] {
        p.extend_from_slice(&[kind, 0, 0, 8, algorithm, 0, 0, 0]);
    }
    let r = handshake(
        link,
        step,
        OPEN_SESSION_REQUEST,
        &p,
        OPEN_SESSION_RESPONSE,
        console_id,
    )
    .await?;
    match r[1] {
        0 if r.len() >= 12 => Ok(Ok(u32::from_le_bytes([r[8], r[9], r[10], r[11]]))),
        0 => Err(IpmiError::Malformed {
            addr: link.addr,
            step,
        }),
        s if suite_refused(s) => Ok(Err(s)),
        s => Err(refused(link, step, s)),
    }
}

fn refused(link: &Link, step: &'static str, status: u8) -> IpmiError {
    IpmiError::Completion {
        addr: link.addr,
        step,
        code: status,
        text: status_text(status),
    }
}

/// RAKP 1–4: both sides prove they know the user's password, and derive
/// the session keys from it without sending it.
async fn rakp(
    link: &Link,
    bmc: &Bmc,
    alg: Alg,
    console_id: u32,
    managed_id: u32,
    role: u8,
) -> Result<V20, IpmiError> {
    let denied = |why: &str| IpmiError::Authentication {
        addr: link.addr,
        user: bmc.user.clone(),
        why: why.to_string(),
    };
    let name = &bmc.user.as_bytes()[..bmc.user.len().min(16)];
    let kuid = bmc.password.as_bytes();
    let rm: [u8; 16] = random();
    let tag = 1;
    let mut p = vec![tag, 0, 0, 0];
    p.extend_from_slice(&managed_id.to_le_bytes());
    p.extend_from_slice(&rm);
    p.extend_from_slice(&[role, 0, 0, name.len() as u8]);
    p.extend_from_slice(name);
    let r2 = handshake(link, "RAKP 1", RAKP1, &p, RAKP2, console_id).await?;
    match r2[1] {
        0 if r2.len() >= 40 + alg.mac(b"", &[]).len() => {}
        0x0d => return Err(denied("no such user")),
        0 => {
            return Err(IpmiError::Malformed {
                addr: link.addr,
                step: "RAKP 2",
            });
        }
        s => return Err(refused(link, "RAKP 2", s)),
    }
    let (rc, guid, code) = (&r2[8..24], &r2[24..40], &r2[40..]);
    let ids = [console_id.to_le_bytes(), managed_id.to_le_bytes()];
    let who = [role, name.len() as u8];
    let expect = alg.mac(kuid, &[&ids[0], &ids[1], &rm, rc, guid, &who, name]);
    if code != expect.as_slice() {
        return Err(denied(
            "the BMC's RAKP 2 code does not match: wrong password",
        ));
    }
    let sik = alg.mac(kuid, &[&rm, rc, &who, name]);
    let mut p3 = vec![tag + 1, 0, 0, 0];
    p3.extend_from_slice(&managed_id.to_le_bytes());
    p3.extend(alg.mac(kuid, &[rc, &ids[0], &who, name]));
    let r4 = handshake(link, "RAKP 3", RAKP3, &p3, RAKP4, console_id).await?;
    match r4[1] {
        0 => {}
        0x0f | 0x0d => return Err(denied("the BMC refused RAKP 3: wrong password")),
        s => return Err(refused(link, "RAKP 4", s)),
    }
    let icv = alg.mac(&sik, &[&rm, &ids[1], guid]);
    if r4.get(8..) != Some(&icv[..alg.icv_len()]) {
        return Err(IpmiError::Malformed {
            addr: link.addr,
            step: "RAKP 4",
        });
    }
    let mut k2 = [0u8; 16];
    k2.copy_from_slice(&alg.mac(&sik, &[&[2u8; 20]])[..16]);
    Ok(V20 {
        alg,
        console_id,
        managed_id,
        seq: 1,
        k1: alg.mac(&sik, &[&[1u8; 20]]),
        k2,
    })
}

impl V20 {
    pub fn protocol(&self) -> Protocol {
        Protocol::Rmcpp(self.alg.suite())
    }

    pub fn session_id(&self) -> u32 {
        self.managed_id
    }

    pub fn wrap(&mut self, msg: &[u8]) -> Vec<u8> {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1).max(1);
        let payload = encrypt(&self.k2, msg);
        let mut d = frame(SECURED_IPMI, self.managed_id, seq, &payload);
        // The signed part starts at the format byte; padded so it, the pad
        // length and the next header fill whole 4-byte words.
        let signed_len = d.len() - RMCP_HEADER.len();
        let pad = (4 - (signed_len + 2) % 4) % 4;
        d.extend(std::iter::repeat_n(0xff, pad));
        d.extend_from_slice(&[pad as u8, 0x07]);
        let code = self.alg.mac(&self.k1, &[&d[RMCP_HEADER.len()..]]);
        d.extend_from_slice(&code[..self.alg.icv_len()]);
        d
    }

    /// The message of a datagram of this session whose code checks out.
    pub fn unwrap(&self, d: &[u8]) -> Option<Vec<u8>> {
        let (ptype, sid, _, payload) = parse(d)?;
        if ptype != SECURED_IPMI || sid != self.console_id {
            return None;
        }
        let n = self.alg.icv_len();
        let (signed, code) = d.split_at_checked(d.len().checked_sub(n)?)?;
        let expect = self.alg.mac(&self.k1, &[&signed[RMCP_HEADER.len()..]]);
        if code != &expect[..n] {
            return None;
        }
        decrypt(&self.k2, payload)
    }
}

/// AES-CBC-128 as IPMI pads it: a random IV first, then pad bytes 1, 2, …
/// and their count, to a whole block.
fn encrypt(key: &[u8; 16], msg: &[u8]) -> Vec<u8> {
    let Ok(aes) = Aes128::new_from_slice(key) else {
        return Vec::new();
    };
    let mut plain = msg.to_vec();
    let pad = (16 - (msg.len() + 1) % 16) % 16;
    plain.extend((1..=pad as u8).chain([pad as u8]));
    let iv: [u8; 16] = random();
    let mut out = iv.to_vec();
    let mut prev = iv;
    for chunk in plain.chunks(16) {
        let mut block = [0u8; 16];
        for (b, (p, c)) in block.iter_mut().zip(chunk.iter().zip(prev)) {
            *b = p ^ c;
        }
        let mut b = aes::Block::from(block);
        aes.encrypt_block(&mut b);
        prev = b.into();
        out.extend_from_slice(&prev);
    }
    out
}

fn decrypt(key: &[u8; 16], payload: &[u8]) -> Option<Vec<u8>> {
    let aes = Aes128::new_from_slice(key).ok()?;
    if payload.len() < 32 || !payload.len().is_multiple_of(16) {
        return None;
    }
    let mut out = Vec::with_capacity(payload.len() - 16);
    let mut blocks = payload.chunks(16);
    let mut prev: [u8; 16] = blocks.next()?.try_into().ok()?;
    for chunk in blocks {
        let cipher: [u8; 16] = chunk.try_into().ok()?;
        let mut b = aes::Block::from(cipher);
        aes.decrypt_block(&mut b);
        let plain: [u8; 16] = b.into();
        out.extend(plain.iter().zip(prev).map(|(p, c)| p ^ c));
        prev = cipher;
    }
    let pad = *out.last()? as usize;
    out.truncate(out.len().checked_sub(pad + 1)?);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_cbc_with_ipmi_padding_round_trips() {
        let key = [7u8; 16];
        for len in [0, 1, 7, 15, 16, 17, 40] {
            let msg: Vec<u8> = (0..len as u8).collect();
            let c = encrypt(&key, &msg);
            assert_eq!(c.len() % 16, 0);
            assert_eq!(decrypt(&key, &c), Some(msg.clone()), "{len}");
            assert_ne!(decrypt(&[8u8; 16], &c), Some(msg), "another key");
        }
        assert_eq!(decrypt(&key, &[0u8; 20]), None);
    }

    /// A session with fixed keys, as RAKP would have left it.
    fn session() -> V20 {
        V20 {
            alg: Alg::Sha1,
            console_id: 9,
            managed_id: 9,
            seq: 1,
            k1: vec![1; 20],
            k2: [2; 16],
        }
    }

    #[test]
    fn session_messages_are_signed_whole_words_and_checked() {
        let mut s = session();
        let d = s.wrap(b"\x20\x18\xc8\x81\x04\x3b\x03\x3e");
        assert_eq!((d.len() - RMCP_HEADER.len() - 12) % 4, 0);
        assert_eq!(
            s.unwrap(&d).as_deref(),
            Some(&b"\x20\x18\xc8\x81\x04\x3b\x03\x3e"[..])
        );
        let mut tampered = d.clone();
        tampered[20] ^= 1;
        assert_eq!(s.unwrap(&tampered), None);
        assert_eq!(s.seq, 2);
    }

    #[test]
    fn hmac_matches_rfc_2202_and_4231() {
        // RFC 2202 case 2 and RFC 4231 case 2: key "Jefe".
        let m = Alg::Sha1.mac(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(hex(&m), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
        let m = Alg::Sha256.mac(b"Jefe", &[b"what do ya want for nothing?"]);
        assert_eq!(
            hex(&m),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn mutated_datagrams_are_rejected_or_read_never_a_panic() {
        let mut s = session();
        let good = s.wrap(b"\x81\x1c\x63\x20\x04\x01\x00\x01\xda");
        let rakp2 = frame(RAKP2, 0, 0, &[1u8; 60]);
        for base in [good, rakp2] {
            for d in super::super::mutations(&base, 20, 20_000) {
                let _ = s.unwrap(&d);
                let _ = parse(&d);
                let _ = decrypt(&s.k2, &d);
            }
        }
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
