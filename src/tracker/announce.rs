//! GET /announce (docs/protocol.md 4.1): BEP 3 with BEP 23 compact peers and `peers6`.
//!
//! Stock clients append their own parameters to a tracker URL that already carries `username`
//! and `psw`; parameters ivcsd does not use (`key`, `supportcrypto`, `corrupt`, ...) are
//! ignored. Refusals are HTTP 200 with `failure reason`, as BitTorrent clients expect.
//!
//! The peer's address is the request's source address with the announced `port`; the `ip`
//! parameter is ignored, since honouring it would let anyone point a swarm at a third party.
//!
//! The paper's `getCipher=yes` on /announce is an alias of /getcipher (docs/protocol.md 4.1); only
//! then does `key` mean a public key.

use std::net::{IpAddr, SocketAddr};

use crate::bencode::{Dict, Value};
use crate::types::{InfoHash, PeerId};

use super::answer::{Answer, insert_token};
use super::config::Config;
use super::credentials::IssuedToken;
use super::decide::{Action, decide};
use super::endpoint::Endpoint;
use super::query::{Query, QueryError};
use super::refusal::Refusal;
use super::swarm::{AnnounceInput, AnnounceOutput, SwarmEvent};
use super::{ApiRequest, TrackerState};

/// The BEP 3 parameters of an announce, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceParams {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub port: u16,
    pub left: u64,
    pub event: SwarmEvent,
    pub numwant: Option<u64>,
    /// BEP 23: compact unless `compact=0`.
    pub compact: bool,
}

impl AnnounceParams {
    /// # Errors
    /// A [`QueryError`] naming the missing or invalid parameter.
    pub fn parse(q: &Query<'_>) -> Result<Self, QueryError> {
        let info_hash = q.info_hash()?;
        let raw_peer_id = q.require("peer_id")?;
        let peer_id = PeerId::from_slice(raw_peer_id).ok_or(QueryError::Invalid {
            name: "peer_id",
            reason: "must be 20 bytes",
        })?;
        let port = u16::try_from(q.require_u64("port")?)
            .ok()
            .filter(|p| *p != 0)
            .ok_or(QueryError::Invalid {
                name: "port",
                reason: "must be 1 to 65535",
            })?;
        // uploaded and downloaded are not used, but a present one must be well-formed
        q.get_u64("uploaded")?;
        q.get_u64("downloaded")?;
        let left = q.require_u64("left")?;
        let event = match q.get("event")? {
            None => SwarmEvent::None,
            Some(raw) => SwarmEvent::parse(raw).ok_or(QueryError::Invalid {
                name: "event",
                reason: "not started, stopped, completed or empty",
            })?,
        };
        Ok(AnnounceParams {
            info_hash,
            peer_id,
            port,
            left,
            event,
            numwant: q.get_u64("numwant")?,
            compact: q.get_flag("compact")?.unwrap_or(true),
        })
    }
}

/// The `interval` and `min interval` of an answer to `params` that carries `peers` peers: the
/// configured ones, or the short waiting interval for a downloader that got no peer to
/// download from (a seeder gets the full interval: it waits for downloaders to call it).
pub fn answer_intervals(config: &Config, params: &AnnounceParams, peers: usize) -> (u64, u64) {
    if peers == 0 && params.left > 0 && params.event != SwarmEvent::Stopped {
        let wait = config.waiting_interval_secs.min(config.interval_secs);
        (wait, wait.min(config.min_interval_secs))
    } else {
        (config.interval_secs, config.min_interval_secs)
    }
}

/// Encodes the answer: `interval`, `min interval`, counts and peers, compact (IPv4 in
/// `peers`, IPv6 in `peers6`) or as a list of dictionaries.
pub fn encode_answer(
    out: &AnnounceOutput,
    compact: bool,
    interval_secs: u64,
    min_interval_secs: u64,
) -> Dict<'static> {
    let int = |n: u64| Value::Int(i64::try_from(n).unwrap_or(i64::MAX));
    let mut d = Dict::new();
    d.insert(&b"interval"[..], int(interval_secs));
    d.insert(&b"min interval"[..], int(min_interval_secs));
    d.insert(&b"complete"[..], int(out.complete as u64));
    d.insert(&b"incomplete"[..], int(out.incomplete as u64));
    if compact {
        let mut v4 = Vec::with_capacity(out.peers.len() * 6);
        let mut v6 = Vec::new();
        for (_, addr) in &out.peers {
            match addr {
                SocketAddr::V4(a) => {
                    v4.extend_from_slice(&a.ip().octets());
                    v4.extend_from_slice(&a.port().to_be_bytes());
                }
                SocketAddr::V6(a) => {
                    v6.extend_from_slice(&a.ip().octets());
                    v6.extend_from_slice(&a.port().to_be_bytes());
                }
            }
        }
        d.insert(&b"peers"[..], Value::from(v4));
        if !v6.is_empty() {
            d.insert(&b"peers6"[..], Value::from(v6));
        }
    } else {
        let list = out
            .peers
            .iter()
            .map(|(id, addr)| {
                let mut p = Dict::new();
                p.insert(&b"peer id"[..], Value::from(id.0.to_vec()));
                p.insert(&b"ip"[..], Value::from(addr.ip().to_string()));
                p.insert(&b"port"[..], Value::Int(i64::from(addr.port())));
                Value::Dict(p)
            })
            .collect::<Vec<_>>();
        d.insert(&b"peers"[..], Value::List(list));
    }
    d
}

/// The answer to an announce: the swarm's counts and peers, the intervals to wait, and a
/// token if one was asked for.
#[derive(Debug)]
pub struct AnnounceAnswer {
    pub out: AnnounceOutput,
    /// BEP 23 compact peers.
    pub compact: bool,
    pub interval_secs: u64,
    pub min_interval_secs: u64,
    pub token: Option<IssuedToken>,
}

impl AnnounceAnswer {
    pub fn to_bencode(&self) -> Dict<'static> {
        let mut d = encode_answer(
            &self.out,
            self.compact,
            self.interval_secs,
            self.min_interval_secs,
        );
        insert_token(&mut d, self.token.as_ref());
        d
    }
}

/// Whether the query is the paper's getcipher alias (`getCipher=yes`, docs/protocol.md 4.1).
pub fn asks_for_cipher(query: &Query<'_>) -> bool {
    matches!(query.get("getCipher"), Ok(Some(v)) if v.eq_ignore_ascii_case(b"yes"))
}

/// Serves an announce (not the getcipher alias, which the router sends to getcipher).
///
/// # Errors
/// The refusal to answer, already recorded.
pub async fn handle(
    state: &TrackerState,
    req: &ApiRequest<'_>,
    query: &Query<'_>,
) -> Result<Answer, Refusal> {
    const ENDPOINT: Endpoint = Endpoint::Announce;
    let info_hash = query.info_hash().ok();
    let auth = state.authenticate(req, query, ENDPOINT, info_hash).await?;
    let user = Some(auth.username());
    let (params, grant, input) = match decide_announce(state, req.source, query, &auth) {
        Ok(decided) => decided,
        Err(refusal) => return Err(state.refuse(req, ENDPOINT, user, info_hash, refusal).await),
    };
    // Recorded before the swarm changes: while the audit log refuses entries the peer is
    // answered 503 and does not join the swarm.
    state
        .audit(req, ENDPOINT, user, Some(params.info_hash), Ok(grant))
        .await?;
    let out = state.swarms.lock().announce(&input, state.clock.instant());
    let (interval_secs, min_interval_secs) =
        answer_intervals(&state.config, &params, out.peers.len());
    Ok(Answer::Announce(AnnounceAnswer {
        out,
        compact: params.compact,
        interval_secs,
        min_interval_secs,
        token: auth.token,
    }))
}

/// Decides the announce: its parameters, the grant and what the swarm is to record.
fn decide_announce(
    state: &TrackerState,
    source: IpAddr,
    query: &Query<'_>,
    auth: &super::credentials::Authenticated,
) -> Result<(AnnounceParams, &'static str, AnnounceInput), Refusal> {
    let params = AnnounceParams::parse(query)?;
    let requester = auth.requester();
    let grant = state
        .catalogue
        .with_access(&params.info_hash, auth.username(), |t| {
            decide(&requester, t, Action::Announce)
        })?;
    let input = AnnounceInput {
        info_hash: params.info_hash,
        peer_id: params.peer_id,
        addr: SocketAddr::new(source, params.port),
        left: params.left,
        event: params.event,
        numwant: params.numwant,
    };
    Ok((params, grant.as_str(), input))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode;

    const HASH: &str = "%124Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A";

    fn parse(q: &str) -> Result<AnnounceParams, QueryError> {
        AnnounceParams::parse(&Query::parse(q).unwrap())
    }

    #[test]
    fn parses_a_stock_announce() {
        let p = parse(&format!(
            "info_hash={HASH}&peer_id=-qB4650-abcdefghijkl&port=6881&uploaded=0&downloaded=0\
             &left=100&event=started&numwant=30&key=1&compact=1&no_peer_id=1&supportcrypto=1"
        ))
        .unwrap();
        assert_eq!(p.port, 6881);
        assert_eq!(p.event, SwarmEvent::Started);
        assert_eq!(p.numwant, Some(30));
        assert!(p.compact);
    }

    macro_rules! malformed {
        ($name:ident, $q:expr, $err:expr) => {
            #[test]
            fn $name() {
                assert_eq!(parse(&$q), Err($err));
            }
        };
    }
    const ID: &str = "-IV0001-abcdefghijkl";
    malformed!(
        no_peer_id,
        format!("info_hash={HASH}&port=1&left=0"),
        QueryError::Missing("peer_id")
    );
    malformed!(
        short_peer_id,
        format!("info_hash={HASH}&peer_id=abc&port=1&left=0"),
        QueryError::Invalid {
            name: "peer_id",
            reason: "must be 20 bytes"
        }
    );
    malformed!(
        port_zero,
        format!("info_hash={HASH}&peer_id={ID}&port=0&left=0"),
        QueryError::Invalid {
            name: "port",
            reason: "must be 1 to 65535"
        }
    );
    malformed!(
        port_too_big,
        format!("info_hash={HASH}&peer_id={ID}&port=65536&left=0"),
        QueryError::Invalid {
            name: "port",
            reason: "must be 1 to 65535"
        }
    );
    malformed!(
        no_left,
        format!("info_hash={HASH}&peer_id={ID}&port=1"),
        QueryError::Missing("left")
    );
    malformed!(
        bad_event,
        format!("info_hash={HASH}&peer_id={ID}&port=1&left=0&event=paused"),
        QueryError::Invalid {
            name: "event",
            reason: "not started, stopped, completed or empty"
        }
    );
    malformed!(
        bad_uploaded,
        format!("info_hash={HASH}&peer_id={ID}&port=1&left=0&uploaded=x"),
        QueryError::Invalid {
            name: "uploaded",
            reason: "not a non-negative decimal integer"
        }
    );

    #[test]
    fn compact_v4_and_v6_and_dictionary_forms() {
        let out = AnnounceOutput {
            complete: 1,
            incomplete: 2,
            peers: vec![
                (PeerId([1; 20]), "10.0.0.1:6881".parse().unwrap()),
                (PeerId([2; 20]), "[2001:db8::1]:51413".parse().unwrap()),
            ],
        };
        let compact = Value::Dict(encode_answer(&out, true, 1800, 900)).encode();
        let decoded = bencode::decode(&compact).unwrap();
        let d = decoded.as_dict().unwrap();
        assert_eq!(
            d.get(b"peers").unwrap().as_bytes().unwrap(),
            &[10, 0, 0, 1, 0x1a, 0xe1]
        );
        let v6 = d.get(b"peers6").unwrap().as_bytes().unwrap();
        assert_eq!(v6.len(), 18);
        assert_eq!(&v6[16..], &51413u16.to_be_bytes());
        assert_eq!(d.get(b"min interval").unwrap().as_int(), Some(900));
        let list = Value::Dict(encode_answer(&out, false, 1800, 900)).encode();
        let decoded = bencode::decode(&list).unwrap();
        let peers = decoded
            .as_dict()
            .unwrap()
            .get(b"peers")
            .unwrap()
            .as_list()
            .unwrap()
            .to_vec();
        assert_eq!(peers.len(), 2);
        let p = peers[1].as_dict().unwrap();
        assert_eq!(p.get(b"ip").unwrap().as_str(), Some("2001:db8::1"));
        assert_eq!(p.get(b"port").unwrap().as_int(), Some(51413));
    }

    #[test]
    fn intervals_are_short_only_for_a_downloader_without_peers() {
        let config = Config {
            interval_secs: 1800,
            min_interval_secs: 900,
            waiting_interval_secs: 30,
            ..Config::default()
        };
        let params = |left, event| AnnounceParams {
            info_hash: InfoHash([1; 20]),
            peer_id: PeerId([2; 20]),
            port: 1,
            left,
            event,
            numwant: None,
            compact: true,
        };
        assert_eq!(
            answer_intervals(&config, &params(5, SwarmEvent::Started), 0),
            (30, 30)
        );
        assert_eq!(
            answer_intervals(&config, &params(5, SwarmEvent::None), 0),
            (30, 30)
        );
        assert_eq!(
            answer_intervals(&config, &params(5, SwarmEvent::None), 1),
            (1800, 900)
        );
        assert_eq!(
            answer_intervals(&config, &params(0, SwarmEvent::None), 0),
            (1800, 900)
        );
        assert_eq!(
            answer_intervals(&config, &params(5, SwarmEvent::Stopped), 0),
            (1800, 900)
        );
        // Never longer than the configured intervals.
        let short = Config {
            interval_secs: 20,
            min_interval_secs: 10,
            ..config
        };
        assert_eq!(
            answer_intervals(&short, &params(5, SwarmEvent::None), 0),
            (20, 10)
        );
    }
}
