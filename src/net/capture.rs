//! ucm's own loopback packet capture, used by tests and the conformance
//! harness to check what actually went on the wire (DSCP marks, TCP flags).
//!
//! Opens an `AF_PACKET`/`SOCK_RAW` socket (`ETH_P_ALL`) bound to `lo`, so it
//! needs root or `CAP_NET_RAW`; [`LoopbackCapture::start`] then fails with
//! `PermissionDenied`.
//!
//! On `lo` every packet is seen twice by a packet socket: once leaving
//! (`sll_pkttype == PACKET_OUTGOING`) and once arriving (`PACKET_HOST`,
//! or broadcast/multicast). Only the **outgoing** copy is kept, so each
//! packet sent appears exactly once, timestamped when it was sent.

use std::io;
use std::mem;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use socket2::{Domain, Protocol, Socket, Type};

use super::dscp::Dscp;
use super::socket::interface_index;

/// TCP flag bits as found in [`CapturedPacket::tcp_flags`].
pub mod tcp_flags {
    /// FIN
    pub const FIN: u8 = 0x01;
    /// SYN
    pub const SYN: u8 = 0x02;
    /// RST
    pub const RST: u8 = 0x04;
    /// PSH
    pub const PSH: u8 = 0x08;
    /// ACK
    pub const ACK: u8 = 0x10;
    /// URG
    pub const URG: u8 = 0x20;
    /// ECE
    pub const ECE: u8 = 0x40;
    /// CWR
    pub const CWR: u8 = 0x80;
}

/// Transport protocol of a captured packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP (17)
    Udp,
    /// TCP (6)
    Tcp,
    /// Anything else, by IP protocol / next-header number. IP fragments are
    /// reported as `Other` too (IPv6: `Other(44)`; IPv4: the protocol
    /// number), with ports 0 and the IP payload.
    Other(u8),
}

/// One packet seen on `lo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedPacket {
    /// When the capture thread read it.
    pub time: SystemTime,
    /// Source address and port (port 0 for [`Transport::Other`]).
    pub src: SocketAddr,
    /// Destination address and port (port 0 for [`Transport::Other`]).
    pub dst: SocketAddr,
    /// Transport protocol.
    pub proto: Transport,
    /// DSCP from the IPv4 ToS / IPv6 traffic class.
    pub dscp: Dscp,
    /// TCP flags byte ([`tcp_flags`]) for TCP packets.
    pub tcp_flags: Option<u8>,
    /// Transport payload (UDP/TCP data; IP payload for `Other`).
    pub payload: Vec<u8>,
}

impl CapturedPacket {
    /// TCP packet with SYN set and ACK clear (connection request).
    pub fn is_syn(&self) -> bool {
        self.tcp_flags
            .is_some_and(|f| f & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN)
    }

    /// TCP packet with SYN and ACK set (connection accept).
    pub fn is_syn_ack(&self) -> bool {
        let both = tcp_flags::SYN | tcp_flags::ACK;
        self.tcp_flags.is_some_and(|f| f & both == both)
    }
}

/// Which packets a capture keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureFilter {
    /// Keep a packet when its source or destination port is one of these;
    /// empty keeps everything (including non-UDP/TCP packets).
    pub ports: Vec<u16>,
}

impl CaptureFilter {
    /// Keep everything.
    pub fn all() -> Self {
        CaptureFilter::default()
    }

    /// Keep packets from or to any of `ports`.
    pub fn ports(ports: &[u16]) -> Self {
        CaptureFilter {
            ports: ports.to_vec(),
        }
    }

    /// Whether `p` passes the filter.
    pub fn matches(&self, p: &CapturedPacket) -> bool {
        self.ports.is_empty()
            || self.ports.contains(&p.src.port())
            || self.ports.contains(&p.dst.port())
    }
}

/// Result of [`LoopbackCapture::stop_with_stats`].
#[derive(Clone, Debug, Default)]
pub struct CaptureResult {
    /// Kept packets, in capture order.
    pub packets: Vec<CapturedPacket>,
    /// Outgoing frames that could not be parsed (non-IP, truncated, ...).
    pub dropped: u64,
}

/// A running capture on `lo`; see the module docs.
pub struct LoopbackCapture {
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    thread: Option<JoinHandle<Vec<CapturedPacket>>>,
}

/// How often the capture thread looks at the stop flag.
const POLL: Duration = Duration::from_millis(20);
/// lo's MTU is 65536; plus the Ethernet header and some slack.
const SNAPLEN: usize = 65536 + 64;

impl LoopbackCapture {
    /// Opens the packet socket on `lo` and starts the reader thread. Every
    /// packet sent on `lo` after this returns is captured (the socket is
    /// bound before returning).
    pub fn start(filter: CaptureFilter) -> io::Result<LoopbackCapture> {
        let ifindex = interface_index("lo")?;
        let sock = open_packet_socket(ifindex)?;
        sock.set_read_timeout(Some(POLL))?;
        // Generous buffer so bursts are not lost while the thread parses.
        // Failing to enlarge it is not fatal.
        let _ = sock.set_recv_buffer_size(8 << 20);

        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let thread = {
            let stop = Arc::clone(&stop);
            let dropped = Arc::clone(&dropped);
            std::thread::Builder::new()
                .name("ucm-lo-capture".into())
                .spawn(move || capture_loop(sock, filter, stop, dropped))?
        };
        Ok(LoopbackCapture {
            stop,
            dropped,
            thread: Some(thread),
        })
    }

    /// Frames that could not be parsed so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Stops the capture and returns the kept packets. Packets already sent
    /// when this is called are included (the socket is drained). Returns
    /// within about 20 ms plus the drain time.
    pub fn stop(self) -> Vec<CapturedPacket> {
        self.stop_with_stats().packets
    }

    /// Like [`LoopbackCapture::stop`], also reporting unparsable frames.
    pub fn stop_with_stats(mut self) -> CaptureResult {
        let packets = self.finish();
        CaptureResult {
            packets,
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    fn finish(&mut self) -> Vec<CapturedPacket> {
        self.stop.store(true, Ordering::Release);
        match self.thread.take() {
            // A panic in the reader thread loses its packets; report none.
            Some(t) => t.join().unwrap_or_default(),
            None => Vec::new(),
        }
    }
}

impl Drop for LoopbackCapture {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.finish();
        }
    }
}

fn open_packet_socket(ifindex: u32) -> io::Result<Socket> {
    let proto_be = (libc::ETH_P_ALL as u16).to_be();
    let sock = Socket::new(
        Domain::PACKET,
        Type::RAW,
        Some(Protocol::from(i32::from(proto_be))),
    )?;
    let ifindex = libc::c_int::try_from(ifindex)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index out of range"))?;
    // SAFETY: sockaddr_ll is a plain C struct; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as libc::sa_family_t;
    sll.sll_protocol = proto_be;
    sll.sll_ifindex = ifindex;
    // SAFETY: `sll` is a fully initialised sockaddr_ll living across the
    // call, and the length passed is its exact size.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

/// One `recvfrom` on the packet socket: frame length and `sll_pkttype`.
fn recv_frame(fd: RawFd, buf: &mut [u8], flags: libc::c_int) -> io::Result<(usize, u8)> {
    // SAFETY: sockaddr_ll is a plain C struct; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `buf` and `sll` are live, writable and their exact sizes are
    // passed; the kernel writes at most that much into each.
    let n = unsafe {
        libc::recvfrom(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            flags,
            (&mut sll as *mut libc::sockaddr_ll).cast(),
            &mut len,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((n as usize, sll.sll_pkttype))
}

fn capture_loop(
    sock: Socket,
    filter: CaptureFilter,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
) -> Vec<CapturedPacket> {
    let fd = sock.as_raw_fd();
    let mut buf = vec![0u8; SNAPLEN];
    let mut out = Vec::new();
    let handle = |n: usize, pkttype: u8, buf: &[u8], out: &mut Vec<CapturedPacket>| {
        if pkttype != libc::PACKET_OUTGOING {
            return;
        }
        match parse_frame(&buf[..n], SystemTime::now()) {
            Some(p) => {
                if filter.matches(&p) {
                    out.push(p);
                }
            }
            None => {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    loop {
        if stop.load(Ordering::Acquire) {
            // Drain what is already queued, without waiting.
            while let Ok((n, t)) = recv_frame(fd, &mut buf, libc::MSG_DONTWAIT) {
                handle(n, t, &buf, &mut out);
            }
            return out;
        }
        match recv_frame(fd, &mut buf, 0) {
            Ok((n, t)) => handle(n, t, &buf, &mut out),
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => {}
                // e.g. ENETDOWN if lo goes down: wait for stop, don't spin.
                _ => std::thread::sleep(POLL),
            },
        }
    }
}

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// Parses a frame as seen on `lo` (14-byte Ethernet header, then IPv4 or
/// IPv6, then TCP/UDP). `None` when it is not IP or is malformed.
///
/// Sliced with etherparse's lax slicer: it takes what is there when a length field is 0 or
/// too large (segmentation-offload super-packets on `lo`), and stops at IP fragments, which
/// are reported as [`Transport::Other`] with their IP payload.
pub fn parse_frame(frame: &[u8], time: SystemTime) -> Option<CapturedPacket> {
    use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};
    let sliced = LaxSlicedPacket::from_ethernet(frame).ok()?;
    let (src_ip, dst_ip, tos, proto, fragment, ip_payload): (IpAddr, IpAddr, u8, u8, bool, &[u8]) =
        match sliced.net.as_ref()? {
            LaxNetSlice::Ipv4(v4) => {
                let h = v4.header();
                let p = v4.payload();
                (
                    IpAddr::V4(h.source_addr()),
                    IpAddr::V4(h.destination_addr()),
                    (h.dcp().value() << 2) | h.ecn().value(),
                    h.protocol().0,
                    p.fragmented,
                    p.payload,
                )
            }
            LaxNetSlice::Ipv6(v6) => {
                let h = v6.header();
                let p = v6.payload();
                // A fragment reads as next header 44, as on the wire.
                let proto = if p.fragmented { 44 } else { p.ip_number.0 };
                (
                    IpAddr::V6(h.source_addr()),
                    IpAddr::V6(h.destination_addr()),
                    h.traffic_class(),
                    proto,
                    p.fragmented,
                    p.payload,
                )
            }
            _ => return None,
        };
    let dscp = Dscp::from_tos(tos);
    let other = |p: u8| CapturedPacket {
        time,
        src: SocketAddr::new(src_ip, 0),
        dst: SocketAddr::new(dst_ip, 0),
        proto: Transport::Other(p),
        dscp,
        tcp_flags: None,
        payload: ip_payload.to_vec(),
    };
    if fragment {
        return Some(other(proto));
    }
    // The slicer stopped inside the IPv6 extension headers (hop-by-hop, routing, destination
    // options, authentication): malformed. A short transport header of TCP or UDP is caught
    // below; other protocols are passed on whole.
    if sliced.stop_err.is_some() && matches!(proto, 0 | 43 | 51 | 60) {
        return None;
    }
    match (proto, sliced.transport) {
        (PROTO_TCP, Some(TransportSlice::Tcp(t))) => Some(CapturedPacket {
            time,
            src: SocketAddr::new(src_ip, t.source_port()),
            dst: SocketAddr::new(dst_ip, t.destination_port()),
            proto: Transport::Tcp,
            dscp,
            // The flags byte as on the wire (CWR..FIN; NS lives in the byte before).
            tcp_flags: Some(t.slice()[13]),
            payload: t.payload().to_vec(),
        }),
        (PROTO_UDP, Some(TransportSlice::Udp(u))) => Some(CapturedPacket {
            time,
            src: SocketAddr::new(src_ip, u.source_port()),
            dst: SocketAddr::new(dst_ip, u.destination_port()),
            proto: Transport::Udp,
            dscp,
            tcp_flags: None,
            payload: u.payload().to_vec(),
        }),
        // TCP or UDP that does not slice is malformed.
        (PROTO_TCP | PROTO_UDP, _) => None,
        (p, _) => Some(other(p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::socket::{bind_tcp, bind_udp, connect_tcp};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

    const ETH_HLEN: usize = 14;
    const ETHERTYPE_IPV4: u16 = 0x0800;
    const ETHERTYPE_IPV6: u16 = 0x86dd;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const V4: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));
    const V6: SocketAddr = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 0, 0, 0));
    const V6_ANY: SocketAddr = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0));

    /// Starts a capture or explains why the test is skipped.
    fn start_or_skip(test: &str, filter: CaptureFilter) -> Option<LoopbackCapture> {
        match LoopbackCapture::start(filter) {
            Ok(c) => Some(c),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                eprintln!("SKIP {test}: AF_PACKET capture needs root or CAP_NET_RAW ({e})");
                None
            }
            Err(e) => panic!("{test}: cannot start capture: {e}"),
        }
    }

    fn eth(ethertype: u16) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f
    }

    fn ipv4(tos: u8, proto: u8, options: &[u8], l4: &[u8]) -> Vec<u8> {
        let ihl = 20 + options.len();
        let total = (ihl + l4.len()) as u16;
        let mut f = eth(ETHERTYPE_IPV4);
        f.push(0x40 | (ihl / 4) as u8);
        f.push(tos);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
        f.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 2]);
        f.extend_from_slice(options);
        f.extend_from_slice(l4);
        f
    }

    fn ipv6(tclass: u8, next: u8, ext_and_l4: &[u8]) -> Vec<u8> {
        let mut f = eth(ETHERTYPE_IPV6);
        f.push(0x60 | (tclass >> 4));
        f.push(tclass << 4);
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&(ext_and_l4.len() as u16).to_be_bytes());
        f.push(next);
        f.push(64);
        f.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        f.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        f.extend_from_slice(ext_and_l4);
        f
    }

    fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = Vec::new();
        u.extend_from_slice(&sport.to_be_bytes());
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        u
    }

    fn tcp(sport: u16, dport: u16, flags: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
        let doff = (20 + options.len()) / 4;
        let mut t = Vec::new();
        t.extend_from_slice(&sport.to_be_bytes());
        t.extend_from_slice(&dport.to_be_bytes());
        t.extend_from_slice(&[0; 8]);
        t.push((doff as u8) << 4);
        t.push(flags);
        t.extend_from_slice(&[0; 6]);
        t.extend_from_slice(options);
        t.extend_from_slice(payload);
        t
    }

    #[test]
    fn parse_ipv4_udp_with_options() {
        let f = ipv4(
            Dscp::CS3.tos() | 1,
            PROTO_UDP,
            &[1, 1, 1, 0],
            &udp(5060, 5061, b"INVITE"),
        );
        let p = parse_frame(&f, SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(p.proto, Transport::Udp);
        assert_eq!(p.dscp, Dscp::CS3);
        assert_eq!(p.src, "127.0.0.1:5060".parse().unwrap());
        assert_eq!(p.dst, "127.0.0.2:5061".parse().unwrap());
        assert_eq!(p.payload, b"INVITE");
        assert_eq!(p.tcp_flags, None);
    }

    #[test]
    fn parse_ipv4_tcp_with_options_and_padding() {
        let mut f = ipv4(
            Dscp::EF.tos(),
            PROTO_TCP,
            &[],
            &tcp(
                1000,
                2000,
                tcp_flags::SYN | tcp_flags::ACK,
                &[2, 4, 5, 180],
                b"hi",
            ),
        );
        f.extend_from_slice(&[0; 6]); // link padding beyond IP total length
        let p = parse_frame(&f, SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(p.proto, Transport::Tcp);
        assert_eq!(p.dscp, Dscp::EF);
        assert!(p.is_syn_ack());
        assert!(!p.is_syn());
        assert_eq!(p.payload, b"hi");
    }

    #[test]
    fn parse_ipv4_fragment_and_other() {
        let mut f = ipv4(0, PROTO_UDP, &[], &[1, 2, 3, 4]);
        f[ETH_HLEN + 6] = 0x20; // MF
        let p = parse_frame(&f, SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(p.proto, Transport::Other(PROTO_UDP));
        assert_eq!(p.payload, [1, 2, 3, 4]);
        let f = ipv4(Dscp::CS6.tos(), 1, &[], &[8, 0, 0, 0]);
        let p = parse_frame(&f, SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(p.proto, Transport::Other(1));
        assert_eq!(p.dscp, Dscp::CS6);
    }

    #[test]
    fn parse_ipv6_udp_and_ext_headers() {
        let f = ipv6(Dscp::AF41.tos(), PROTO_UDP, &udp(1, 2, b"rtp"));
        let p = parse_frame(&f, SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(p.dscp, Dscp::AF41);
        assert_eq!(p.proto, Transport::Udp);
        assert_eq!(p.payload, b"rtp");
        assert_eq!(p.src, "[::1]:1".parse().unwrap());

        // hop-by-hop (8 bytes) then destination options (16 bytes) then TCP
        let mut ext = vec![60, 0, 0, 0, 0, 0, 0, 0];
        ext.extend_from_slice(&[PROTO_TCP, 1]);
        ext.extend_from_slice(&[0; 14]);
        ext.extend_from_slice(&tcp(7, 8, tcp_flags::SYN, &[], b""));
        let f = ipv6(Dscp::CS3.tos(), 0, &ext);
        let p = parse_frame(&f, SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(p.proto, Transport::Tcp);
        assert!(p.is_syn());
        assert_eq!(p.dst.port(), 8);

        // fragment header
        let f = ipv6(0, 44, &[PROTO_UDP, 0, 0, 1, 0, 0, 0, 9, 1, 2]);
        let p = parse_frame(&f, SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(p.proto, Transport::Other(44));
        assert_eq!(p.src.port(), 0);
    }

    #[test]
    fn parse_rejects_garbage() {
        assert!(parse_frame(&[], SystemTime::UNIX_EPOCH).is_none());
        assert!(parse_frame(&eth(0x0806), SystemTime::UNIX_EPOCH).is_none());
        let mut f = ipv4(0, PROTO_UDP, &[], &udp(1, 2, b"x"));
        f[ETH_HLEN] = 0x43; // IHL 12 bytes
        assert!(parse_frame(&f, SystemTime::UNIX_EPOCH).is_none());
        let f = ipv4(0, PROTO_TCP, &[], &[0; 10]); // short TCP header
        assert!(parse_frame(&f, SystemTime::UNIX_EPOCH).is_none());
        let mut f = ipv4(0, PROTO_TCP, &[], &tcp(1, 2, 0, &[], b""));
        f[ETH_HLEN + 20 + 12] = 0x20; // data offset 8 bytes
        assert!(parse_frame(&f, SystemTime::UNIX_EPOCH).is_none());
        let f = ipv6(0, 0, &[PROTO_UDP, 9]); // hop-by-hop longer than packet
        assert!(parse_frame(&f, SystemTime::UNIX_EPOCH).is_none());
        let f = ipv4(0, PROTO_UDP, &[], &udp(1, 2, b"x"));
        // every truncation of a valid frame is rejected or parsed, never panics
        for n in 0..f.len() {
            let _ = parse_frame(&f[..n], SystemTime::UNIX_EPOCH);
        }
    }

    #[test]
    fn filter_matches() {
        let f = ipv4(0, PROTO_UDP, &[], &udp(5060, 40000, b""));
        let p = parse_frame(&f, SystemTime::UNIX_EPOCH).unwrap();
        assert!(CaptureFilter::all().matches(&p));
        assert!(CaptureFilter::ports(&[5060]).matches(&p));
        assert!(CaptureFilter::ports(&[40000]).matches(&p));
        assert!(!CaptureFilter::ports(&[5061]).matches(&p));
    }

    #[test]
    fn stop_is_prompt_when_idle() {
        let Some(cap) = start_or_skip("stop_is_prompt_when_idle", CaptureFilter::ports(&[1]))
        else {
            return;
        };
        std::thread::sleep(Duration::from_millis(50));
        let t = std::time::Instant::now();
        let r = cap.stop_with_stats();
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "stop took {:?}",
            t.elapsed()
        );
        assert!(r.packets.is_empty());
        // dropping a running capture must not hang either
        if let Some(cap) = start_or_skip("stop_is_prompt_when_idle", CaptureFilter::all()) {
            drop(cap);
        }
    }

    /// UDP from a CS3-marked socket is captured once, with DSCP CS3, on
    /// IPv4, IPv6 and IPv4-from-dual-stack.
    #[tokio::test]
    async fn udp_marking_on_the_wire() {
        let rx4 = bind_udp(V4, Dscp::DEFAULT).unwrap();
        let rx6 = bind_udp(V6, Dscp::DEFAULT).unwrap();
        let p4 = rx4.local_addr().unwrap().port();
        let p6 = rx6.local_addr().unwrap().port();
        let tx4 = bind_udp(V4, Dscp::CS3).unwrap();
        let tx6 = bind_udp(V6, Dscp::CS3).unwrap();
        let txd = bind_udp(V6_ANY, Dscp::EF).unwrap();
        let Some(cap) = start_or_skip("udp_marking_on_the_wire", CaptureFilter::ports(&[p4, p6]))
        else {
            return;
        };
        tx4.send_to(b"v4", rx4.local_addr().unwrap()).await.unwrap();
        tx6.send_to(b"v6", rx6.local_addr().unwrap()).await.unwrap();
        txd.send_to(b"dual", rx4.local_addr().unwrap())
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        for rx in [&rx4, &rx6, &rx4] {
            tokio::time::timeout(Duration::from_secs(5), rx.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
        }
        let pkts = cap.stop();
        let find = |payload: &[u8]| -> Vec<&CapturedPacket> {
            pkts.iter().filter(|p| p.payload == payload).collect()
        };

        let v4 = find(b"v4");
        assert_eq!(v4.len(), 1, "each packet exactly once: {pkts:?}");
        assert_eq!(v4[0].dscp, Dscp::CS3);
        assert_eq!(v4[0].proto, Transport::Udp);
        assert_eq!(v4[0].src, tx4.local_addr().unwrap());
        assert_eq!(v4[0].dst.port(), p4);

        let v6 = find(b"v6");
        assert_eq!(v6.len(), 1, "{pkts:?}");
        assert_eq!(v6[0].dscp, Dscp::CS3);
        assert!(v6[0].src.is_ipv6());

        let dual = find(b"dual");
        assert_eq!(dual.len(), 1, "{pkts:?}");
        assert_eq!(dual[0].dscp, Dscp::EF, "dual-stack socket must set IP_TOS");
        assert!(dual[0].src.is_ipv4());
    }

    /// The SYN carries the client's mark and the SYN-ACK the listener's,
    /// proving both were set before connect() / listen().
    #[tokio::test]
    async fn tcp_syn_and_syn_ack_marking() {
        for (name, listen, connect_ip) in [
            ("v4", V4, IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ("v6", V6, IpAddr::V6(Ipv6Addr::LOCALHOST)),
            (
                "dual-stack listener, v4 client",
                V6_ANY,
                IpAddr::V4(Ipv4Addr::LOCALHOST),
            ),
        ] {
            let l = bind_tcp(listen, Dscp::EF, 16).unwrap();
            let port = l.local_addr().unwrap().port();
            let Some(cap) =
                start_or_skip("tcp_syn_and_syn_ack_marking", CaptureFilter::ports(&[port]))
            else {
                return;
            };
            let remote = SocketAddr::new(connect_ip, port);
            let (c, acc) = tokio::join!(connect_tcp(remote, None, Dscp::CS3), l.accept());
            let mut c = c.unwrap();
            let (mut s, _) = acc.unwrap();
            c.write_all(b"REGISTER").await.unwrap();
            let mut buf = [0u8; 8];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(b"200").await.unwrap();
            let mut buf3 = [0u8; 3];
            c.read_exact(&mut buf3).await.unwrap();
            let pkts = cap.stop();

            let syn: Vec<_> = pkts.iter().filter(|p| p.is_syn()).collect();
            let syn_ack: Vec<_> = pkts.iter().filter(|p| p.is_syn_ack()).collect();
            assert_eq!(syn.len(), 1, "{name}: {pkts:?}");
            assert_eq!(syn_ack.len(), 1, "{name}: {pkts:?}");
            assert_eq!(syn[0].dscp, Dscp::CS3, "{name}: SYN");
            assert_eq!(syn[0].dst.port(), port);
            assert_eq!(syn_ack[0].dscp, Dscp::EF, "{name}: SYN-ACK");
            assert_eq!(syn_ack[0].src.port(), port);
            assert_eq!(syn[0].src.ip(), connect_ip, "{name}");

            let data_c: Vec<_> = pkts.iter().filter(|p| p.payload == b"REGISTER").collect();
            assert_eq!(data_c.len(), 1, "{name}");
            assert_eq!(data_c[0].dscp, Dscp::CS3);
            let data_s: Vec<_> = pkts.iter().filter(|p| p.payload == b"200").collect();
            assert_eq!(data_s.len(), 1, "{name}");
            assert_eq!(data_s[0].dscp, Dscp::EF, "{name}: accepted socket inherits");
            assert!(pkts.iter().all(|p| p.proto == Transport::Tcp));
        }
    }
}
