//! A tiny DNS server for pods: answers A queries for a fixed set of names over UDP, from a
//! thread of the test process bound to an address pods reach (the CNI bridge's gateway). A pod
//! uses it when its sandbox's `DNSConfig` lists it as nameserver (CRI writes the pod's
//! `/etc/resolv.conf` from it).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
/// NXDOMAIN.
const RCODE_NAME_ERROR: u16 = 3;
/// FORMERR.
const RCODE_FORMAT_ERROR: u16 = 1;

/// A running server; dropping it stops the thread.
pub struct DnsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    queries: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl DnsServer {
    /// Serves `names` (lowercase, without the final dot) at `ip:53`. Other names get
    /// NXDOMAIN; other query types of a known name get an empty answer (as for a name with
    /// no IPv6 address).
    pub fn start(ip: Ipv4Addr, names: &[(&str, Ipv4Addr)]) -> Result<Self> {
        let socket = UdpSocket::bind((ip, 53)).with_context(|| format!("binding {ip}:53/udp"))?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let addr = socket.local_addr()?;
        let names: HashMap<String, Ipv4Addr> =
            names.iter().map(|(n, a)| (n.to_string(), *a)).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, queries) = (stop.clone(), queries.clone());
            std::thread::spawn(move || serve(&socket, &names, &stop, &queries))
        };
        Ok(DnsServer {
            addr,
            stop,
            queries,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many queries it has answered.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    socket: &UdpSocket,
    names: &HashMap<String, Ipv4Addr>,
    stop: &AtomicBool,
    queries: &AtomicUsize,
) {
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::Relaxed) {
        let Ok((len, peer)) = socket.recv_from(&mut buf) else {
            continue;
        };
        if let Some(reply) = answer(&buf[..len], names) {
            queries.fetch_add(1, Ordering::Relaxed);
            let _ = socket.send_to(&reply, peer);
        }
    }
}

/// The reply to one query message, or None when it is not a query at all.
pub fn answer(query: &[u8], names: &HashMap<String, Ipv4Addr>) -> Option<Vec<u8>> {
    let header = query.get(..12)?;
    if header[2] & 0x80 != 0 {
        return None; // a response, not a query
    }
    let question = parse_question(query);
    let mut reply = Vec::with_capacity(64);
    reply.extend_from_slice(&header[..2]); // id
    let rd = u16::from(header[2] & 0x01);
    let (rcode, question, address) = match question {
        None => (RCODE_FORMAT_ERROR, None, None),
        Some((name, end, qtype, qclass)) => match names.get(&name) {
            None => (RCODE_NAME_ERROR, Some(end), None),
            Some(ip) if qtype == TYPE_A && qclass == CLASS_IN => (0, Some(end), Some(*ip)),
            Some(_) => (0, Some(end), None),
        },
    };
    // QR, AA, RD as asked, RA; the rcode.
    let flags: u16 = 0x8000 | 0x0400 | (rd << 8) | 0x0080 | rcode;
    reply.extend_from_slice(&flags.to_be_bytes());
    reply.extend_from_slice(&u16::from(question.is_some()).to_be_bytes());
    reply.extend_from_slice(&u16::from(address.is_some()).to_be_bytes());
    reply.extend_from_slice(&[0, 0, 0, 0]); // no authority, no additional records
    if let Some(end) = question {
        reply.extend_from_slice(&query[12..end]);
    }
    if let Some(ip) = address {
        reply.extend_from_slice(&[0xc0, 12]); // the question's name
        reply.extend_from_slice(&TYPE_A.to_be_bytes());
        reply.extend_from_slice(&CLASS_IN.to_be_bytes());
        reply.extend_from_slice(&5u32.to_be_bytes()); // TTL
        reply.extend_from_slice(&4u16.to_be_bytes());
        reply.extend_from_slice(&ip.octets());
    }
    Some(reply)
}

/// The first question: (lowercase name without the final dot, end offset, type, class).
fn parse_question(message: &[u8]) -> Option<(String, usize, u16, u16)> {
    if u16::from_be_bytes([*message.get(4)?, *message.get(5)?]) == 0 {
        return None;
    }
    let mut labels = Vec::new();
    let mut at = 12;
    loop {
        let len = usize::from(*message.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // a compression pointer has nothing to point to in a question
        }
        labels.push(String::from_utf8_lossy(message.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let field = |i: usize| Some(u16::from_be_bytes([*message.get(i)?, *message.get(i + 1)?]));
    let (qtype, qclass) = (field(at)?, field(at + 2)?);
    Some((labels.join("."), at + 4, qtype, qclass))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&CLASS_IN.to_be_bytes());
        q
    }

    #[test]
    fn answers_a_queries_of_known_names() {
        let names = HashMap::from([("svc.test".to_string(), Ipv4Addr::new(192, 0, 2, 7))]);
        let q = query(0x1234, "SVC.test", TYPE_A);
        let reply = answer(&q, &names).unwrap();
        assert_eq!(&reply[..2], &[0x12, 0x34]);
        assert_eq!(reply[3] & 0x0f, 0, "rcode");
        assert_eq!(&reply[6..8], &[0, 1], "one answer");
        assert_eq!(&reply[12..q.len()], &q[12..]);
        assert_eq!(&reply[reply.len() - 4..], &[192, 0, 2, 7]);

        let aaaa = answer(&query(1, "svc.test", 28), &names).unwrap();
        assert_eq!((aaaa[3] & 0x0f, &aaaa[6..8]), (0, &[0u8, 0][..]));
        let unknown = answer(&query(2, "other.test", TYPE_A), &names).unwrap();
        assert_eq!(unknown[3] & 0x0f, 3, "NXDOMAIN");
        assert!(answer(&q[..5], &names).is_none());
        let mut response = q.clone();
        response[2] |= 0x80;
        assert!(answer(&response, &names).is_none());
    }
}
