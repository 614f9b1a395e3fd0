//! Hand-built captures and frames for every format, link type, tunnel and error case.

use super::*;
use crate::net::Dscp;

// ---------------------------------------------------------------- frame builders

fn ipv4_opts(tos: u8, proto: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let hlen = 20 + options.len();
    let total = (hlen + payload.len()) as u16;
    let mut v = vec![0x40 | (hlen / 4) as u8, tos];
    v.extend_from_slice(&total.to_be_bytes());
    v.extend_from_slice(&[0, 1, 0, 0, 64, proto, 0, 0]);
    v.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    v.extend_from_slice(options);
    v.extend_from_slice(payload);
    v
}

fn ipv4(tos: u8, proto: u8, payload: &[u8]) -> Vec<u8> {
    ipv4_opts(tos, proto, &[], payload)
}

fn ipv4_frag(tos: u8, proto: u8, flags_offset: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = ipv4(tos, proto, payload);
    v[6..8].copy_from_slice(&flags_offset.to_be_bytes());
    v
}

fn ipv6(tclass: u8, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x60 | (tclass >> 4), tclass << 4, 0, 0];
    v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    v.extend_from_slice(&[next, 64]);
    v.extend_from_slice(&[0u8; 32]);
    v.extend_from_slice(payload);
    v
}

fn udp() -> Vec<u8> {
    vec![0x13, 0xc4, 0x13, 0xc4, 0, 12, 0, 0, b'a', b'b', b'c', b'd']
}

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb,
    ];
    v.extend_from_slice(&ethertype.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn gre(flags: u16, proto: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = flags.to_be_bytes().to_vec();
    v.extend_from_slice(&proto.to_be_bytes());
    let extra = [0x8000u16, 0x2000, 0x1000]
        .iter()
        .filter(|&&bit| flags & bit != 0)
        .count();
    v.extend(std::iter::repeat_n(0xee, extra * 4));
    v.extend_from_slice(payload);
    v
}

fn tos(dscp: u8) -> u8 {
    Dscp::new(dscp).expect("dscp").tos() | 0x01 // an ECN bit must not matter
}

fn ip(dscp: u8, version: IpVersion, depth: u8) -> Decoded {
    Decoded::Ip(IpInfo {
        dscp: Dscp::new(dscp).expect("dscp"),
        version,
        depth,
    })
}

// ---------------------------------------------------------------- link layers

#[test]
fn every_link_type_reaches_ip() {
    let v4 = ipv4(tos(46), 17, &udp());
    let v6 = ipv6(tos(34), 17, &udp());

    assert_eq!(decode(1, &eth(0x0800, &v4)), ip(46, IpVersion::V4, 1));
    assert_eq!(decode(1, &eth(0x86dd, &v6)), ip(34, IpVersion::V6, 1));
    for raw in [12, 14, 101] {
        assert_eq!(decode(raw, &v4), ip(46, IpVersion::V4, 1), "link {raw}");
        assert_eq!(decode(raw, &v6), ip(34, IpVersion::V6, 1), "link {raw}");
    }
    assert_eq!(decode(228, &v4), ip(46, IpVersion::V4, 1));
    assert_eq!(decode(229, &v6), ip(34, IpVersion::V6, 1));

    // Linux cooked v1: 16-byte header, protocol last.
    let mut sll = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
    sll.extend_from_slice(&v4);
    assert_eq!(decode(113, &sll), ip(46, IpVersion::V4, 1));
    // Linux cooked v2: 20-byte header, protocol first.
    let mut sll2 = vec![
        0x86, 0xdd, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0,
    ];
    sll2.extend_from_slice(&v6);
    assert_eq!(decode(276, &sll2), ip(34, IpVersion::V6, 1));

    // BSD loopback: family in either byte order.
    for fam in [2u32.to_le_bytes(), 2u32.to_be_bytes()] {
        let mut f = fam.to_vec();
        f.extend_from_slice(&v4);
        assert_eq!(decode(0, &f), ip(46, IpVersion::V4, 1));
    }
    for family in [24u32, 28, 30] {
        for fam in [family.to_le_bytes(), family.to_be_bytes()] {
            let mut f = fam.to_vec();
            f.extend_from_slice(&v6);
            assert_eq!(decode(0, &f), ip(34, IpVersion::V6, 1), "family {family}");
        }
    }

    // Not IP, and unknown link types.
    assert_eq!(decode(1, &eth(0x0806, &[0u8; 28])), Decoded::NotIp);
    assert_eq!(decode(1, &[0u8; 5]), Decoded::NotIp);
    assert_eq!(decode(147, &v4), Decoded::UnsupportedLinkType);
    assert_eq!(decode(101, &[]), Decoded::NotIp);
}

#[test]
fn vlan_stacks_are_skipped() {
    let v4 = ipv4(tos(24), 17, &udp());
    // 802.1ad outer, 802.1Q inner.
    let mut tags = vec![0x00, 0x64, 0x81, 0x00, 0x00, 0x0a, 0x08, 0x00];
    tags.extend_from_slice(&v4);
    assert_eq!(decode(1, &eth(0x88a8, &tags)), ip(24, IpVersion::V4, 1));
    // Old QinQ 0x9100 then 0x8100 then 0x8100.
    let mut tags = vec![0, 1, 0x81, 0x00, 0, 2, 0x81, 0x00, 0, 3, 0x86, 0xdd];
    tags.extend_from_slice(&ipv6(tos(46), 17, &udp()));
    assert_eq!(decode(1, &eth(0x9100, &tags)), ip(46, IpVersion::V6, 1));
    // A tag with nothing after it.
    assert_eq!(decode(1, &eth(0x8100, &[0, 1])), Decoded::NotIp);
}

#[test]
fn pppoe_and_mpls_carry_ip() {
    let mut pppoe = vec![0x11, 0, 0x12, 0x34, 0, 0, 0x00, 0x21];
    pppoe.extend_from_slice(&ipv4(tos(26), 17, &udp()));
    assert_eq!(decode(1, &eth(0x8864, &pppoe)), ip(26, IpVersion::V4, 1));
    let mut mpls = vec![0, 1, 0x00, 64, 0, 2, 0x01, 64];
    mpls.extend_from_slice(&ipv6(tos(10), 17, &udp()));
    assert_eq!(decode(1, &eth(0x8847, &mpls)), ip(10, IpVersion::V6, 1));
}

// ---------------------------------------------------------------- IP and tunnels

#[test]
fn ipv4_options_are_skipped() {
    let inner = ipv4(tos(46), 17, &udp());
    let outer = ipv4_opts(tos(0), 4, &[1, 1, 1, 0, 0x94, 4, 0, 0], &inner);
    assert_eq!(decode(101, &outer), ip(46, IpVersion::V4, 2));
    // Header length beyond the data: not IP.
    let mut bad = ipv4(0, 17, &[]);
    bad[0] = 0x4f;
    assert_eq!(decode(101, &bad), Decoded::NotIp);
}

#[test]
fn ipv6_extension_headers_are_skipped() {
    let inner = ipv4(tos(46), 17, &udp());
    // Hop-by-hop (8) -> routing (16) -> destination options (8) -> fragment (8, first) -> IPv4.
    let mut ext = vec![43, 0, 1, 4, 0, 0, 0, 0];
    ext.extend_from_slice(&[60, 1, 0, 0, 0, 0, 0, 0]);
    ext.extend_from_slice(&[0u8; 8]);
    ext.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]);
    ext.extend_from_slice(&[4, 0, 0x00, 0x01, 0, 0, 0, 7]);
    ext.extend_from_slice(&inner);
    assert_eq!(
        decode(101, &ipv6(tos(0), 0, &ext)),
        ip(46, IpVersion::V4, 2)
    );

    // A non-first fragment: counted with the outer traffic class.
    let mut frag = vec![4, 0, 0x05, 0x00, 0, 0, 0, 7];
    frag.extend_from_slice(&inner);
    assert_eq!(
        decode(101, &ipv6(tos(8), 44, &frag)),
        ip(8, IpVersion::V6, 1)
    );

    // Truncated extension header: the outer header still counts.
    assert_eq!(
        decode(101, &ipv6(tos(8), 60, &[17, 9])),
        ip(8, IpVersion::V6, 1)
    );
    // Authentication header ((2 + 2) * 4 = 16 bytes) then IPv6-in-IPv6.
    let mut ah = vec![41, 2, 0, 0];
    ah.extend_from_slice(&[0u8; 12]);
    ah.extend_from_slice(&ipv6(tos(48), 17, &udp()));
    assert_eq!(decode(101, &ipv6(0, 51, &ah)), ip(48, IpVersion::V6, 2));
}

#[test]
fn ip_in_ip_descends_to_the_innermost_header() {
    let v4 = ipv4(tos(46), 17, &udp());
    let v6 = ipv6(tos(34), 17, &udp());
    assert_eq!(decode(101, &ipv4(0, 4, &v4)), ip(46, IpVersion::V4, 2));
    assert_eq!(decode(101, &ipv4(0, 41, &v6)), ip(34, IpVersion::V6, 2));
    assert_eq!(decode(101, &ipv6(0, 4, &v4)), ip(46, IpVersion::V4, 2));
    assert_eq!(decode(101, &ipv6(0, 41, &v6)), ip(34, IpVersion::V6, 2));
    // Three levels.
    let three = ipv6(0, 4, &ipv4(tos(8), 41, &v6));
    assert_eq!(decode(1, &eth(0x86dd, &three)), ip(34, IpVersion::V6, 3));
    // A malformed inner header: the outer one counts.
    assert_eq!(
        decode(101, &ipv4(tos(16), 4, &[0x45, 0xb8])),
        ip(16, IpVersion::V4, 1)
    );
}

#[test]
fn fragments_only_the_first_is_tunnel_parsed() {
    let inner = ipv4(tos(46), 17, &udp());
    // First fragment (MF set, offset 0).
    assert_eq!(
        decode(101, &ipv4_frag(tos(0), 4, 0x2000, &inner)),
        ip(46, IpVersion::V4, 2)
    );
    // Non-first fragments (with and without MF): their own DSCP.
    for fo in [0x2010u16, 0x0010] {
        assert_eq!(
            decode(101, &ipv4_frag(tos(26), 4, fo, &inner)),
            ip(26, IpVersion::V4, 1)
        );
    }
}

#[test]
fn gre_variants_descend() {
    let v4 = ipv4(tos(46), 17, &udp());
    let v6 = ipv6(tos(34), 17, &udp());
    let e = eth(0x0800, &v4);
    let cases: Vec<(Vec<u8>, Decoded)> = vec![
        (gre(0, 0x0800, &v4), ip(46, IpVersion::V4, 2)),
        (gre(0xb000, 0x0800, &v4), ip(46, IpVersion::V4, 2)), // checksum, key, sequence
        (gre(0x2000, 0x86dd, &v6), ip(34, IpVersion::V6, 2)),
        (gre(0x2000, 0x6558, &e), ip(46, IpVersion::V4, 2)), // transparent Ethernet
        (gre(0, 0x88be, &e), ip(46, IpVersion::V4, 2)),      // ERSPAN type I
        (
            gre(
                0x1000,
                0x88be,
                &[&[0x10, 0, 0, 1, 0, 0, 0, 0][..], &e].concat(),
            ),
            ip(46, IpVersion::V4, 2),
        ), // ERSPAN type II
        (
            gre(0x1000, 0x22eb, &[&[0x20u8; 11][..], &[0x00], &e].concat()),
            ip(46, IpVersion::V4, 2),
        ), // ERSPAN type III
        (
            gre(
                0x1000,
                0x22eb,
                &[&[0x20u8; 11][..], &[0x01], &[0u8; 8], &e].concat(),
            ),
            ip(46, IpVersion::V4, 2),
        ), // ERSPAN type III with platform subheader
        (gre(0x0001, 0x880b, &v4), ip(0, IpVersion::V4, 1)), // PPTP: not descended
        (gre(0, 0x0800, &[0x45]), ip(0, IpVersion::V4, 1)),  // truncated inner
    ];
    for (i, (payload, want)) in cases.iter().enumerate() {
        let outer = eth(0x0800, &ipv4(0, 47, payload));
        assert_eq!(decode(1, &outer), *want, "case {i}");
    }
    // GRE over IPv6, carrying Ethernet with a VLAN tag.
    let tagged = eth(0x8100, &[&[0, 5, 0x86, 0xdd][..], &v6].concat());
    assert_eq!(
        decode(229, &ipv6(0, 47, &gre(0, 0x6558, &tagged))),
        ip(34, IpVersion::V6, 2)
    );
}

#[test]
fn deep_nesting_is_bounded() {
    let mut pkt = ipv4(tos(46), 17, &udp());
    for _ in 0..100 {
        pkt = ipv4(0, 4, &pkt);
    }
    // Stops at the depth limit instead of overflowing the stack.
    match decode(101, &pkt) {
        Decoded::Ip(info) => assert_eq!(info.depth, 16),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------- classic pcap

fn pcap(big: bool, nanos: bool, snaplen: u32, link: u32, records: &[(u32, u32, &[u8])]) -> Vec<u8> {
    let w32 = |v: u32| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let w16 = |v: u16| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut f = w32(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }).to_vec();
    f.extend_from_slice(&w16(2));
    f.extend_from_slice(&w16(4));
    f.extend_from_slice(&[0u8; 8]);
    f.extend_from_slice(&w32(snaplen));
    f.extend_from_slice(&w32(link));
    for (sec, frac, data) in records {
        f.extend_from_slice(&w32(*sec));
        f.extend_from_slice(&w32(*frac));
        f.extend_from_slice(&w32(data.len() as u32));
        f.extend_from_slice(&w32(data.len() as u32 + 10));
        f.extend_from_slice(data);
    }
    f
}

/// frame, ts_nanos, link_type, data, orig_len
type Row = (u64, u64, u16, Vec<u8>, u32);

fn read_all(bytes: &[u8]) -> Result<Vec<Row>, PcapError> {
    let mut r = CaptureReader::new(bytes)?;
    let mut out = Vec::new();
    while let Some(p) = r.next_packet()? {
        out.push((
            p.frame,
            p.ts_nanos,
            p.link_type,
            p.data.to_vec(),
            p.orig_len,
        ));
    }
    Ok(out)
}

#[test]
fn pcap_both_byte_orders_and_resolutions() {
    let a = eth(0x0800, &ipv4(tos(46), 17, &udp()));
    let b = ipv4(tos(24), 6, &[]);
    for big in [false, true] {
        let f = pcap(big, false, 65535, 1, &[(10, 5, &a), (11, 999_999, &a)]);
        let r = CaptureReader::new(&f[..]).expect("header");
        assert_eq!(r.format(), CaptureFormat::Pcap);
        let got = read_all(&f).expect("read");
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0],
            (1, 10_000_005_000, 1, a.clone(), a.len() as u32 + 10)
        );
        assert_eq!(got[1].1, 11_999_999_000);

        let f = pcap(big, true, 0, 101 | 0x1000_0000, &[(7, 123_456_789, &b)]);
        let r = CaptureReader::new(&f[..]).expect("header");
        assert_eq!(r.format(), CaptureFormat::PcapNanos);
        let got = read_all(&f).expect("read");
        assert_eq!(
            got,
            vec![(1, 7_123_456_789, 101, b.clone(), b.len() as u32 + 10)]
        );
        let tally = dscp_tally(&f[..]).expect("tally");
        assert_eq!(tally.by_dscp, [(24, 1)].into());
    }
}

// ---------------------------------------------------------------- pcapng

#[derive(Clone, Copy)]
struct Ng {
    big: bool,
}

impl Ng {
    fn w16(self, v: u16) -> [u8; 2] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    fn w32(self, v: u32) -> [u8; 4] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    fn block(self, kind: u32, body: &[u8]) -> Vec<u8> {
        let mut body = body.to_vec();
        while body.len() % 4 != 0 {
            body.push(0);
        }
        let len = body.len() as u32 + 12;
        let mut b = self.w32(kind).to_vec();
        b.extend_from_slice(&self.w32(len));
        b.extend_from_slice(&body);
        b.extend_from_slice(&self.w32(len));
        b
    }
    fn shb(self) -> Vec<u8> {
        let mut body = self.w32(0x1a2b_3c4d).to_vec();
        body.extend_from_slice(&self.w16(1));
        body.extend_from_slice(&self.w16(0));
        body.extend_from_slice(&[0xff; 8]);
        self.block(0x0a0d_0d0a, &body)
    }
    fn idb(self, link: u16, snaplen: u32, tsresol: Option<u8>) -> Vec<u8> {
        let mut body = self.w16(link).to_vec();
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&self.w32(snaplen));
        // if_name option first, to check options are walked.
        body.extend_from_slice(&self.w16(2));
        body.extend_from_slice(&self.w16(3));
        body.extend_from_slice(b"lo\0\0");
        if let Some(r) = tsresol {
            body.extend_from_slice(&self.w16(9));
            body.extend_from_slice(&self.w16(1));
            body.extend_from_slice(&[r, 0, 0, 0]);
        }
        body.extend_from_slice(&[0, 0, 0, 0]);
        self.block(1, &body)
    }
    fn epb(self, iface: u32, ts: u64, data: &[u8]) -> Vec<u8> {
        let mut body = self.w32(iface).to_vec();
        body.extend_from_slice(&self.w32((ts >> 32) as u32));
        body.extend_from_slice(&self.w32(ts as u32));
        body.extend_from_slice(&self.w32(data.len() as u32));
        body.extend_from_slice(&self.w32(data.len() as u32));
        body.extend_from_slice(data);
        self.block(6, &body)
    }
    fn pb(self, iface: u16, ts: u64, data: &[u8]) -> Vec<u8> {
        let mut body = self.w16(iface).to_vec();
        body.extend_from_slice(&self.w16(0));
        body.extend_from_slice(&self.w32((ts >> 32) as u32));
        body.extend_from_slice(&self.w32(ts as u32));
        body.extend_from_slice(&self.w32(data.len() as u32));
        body.extend_from_slice(&self.w32(data.len() as u32));
        body.extend_from_slice(data);
        self.block(2, &body)
    }
    fn spb(self, data: &[u8]) -> Vec<u8> {
        let mut body = self.w32(data.len() as u32).to_vec();
        body.extend_from_slice(data);
        self.block(3, &body)
    }
}

#[test]
fn pcapng_two_sections_of_opposite_byte_order() {
    let le = Ng { big: false };
    let be = Ng { big: true };
    let a = eth(0x0800, &ipv4(tos(46), 17, &udp())); // 5 bytes short of a multiple of 4
    let b = ipv6(tos(24), 17, &udp());
    let mut f = le.shb();
    f.extend(le.idb(1, 0, Some(9))); // nanoseconds
    f.extend(le.block(0x0000_0bad, &[1, 2, 3])); // custom block: skipped
    f.extend(le.epb(0, 1_500_000_000_123_456_789, &a));
    f.extend(le.block(5, &[0u8; 20])); // interface statistics: skipped
    f.extend(be.shb());
    f.extend(be.idb(101, 0, Some(0x8a))); // 2^-10 s
    f.extend(be.idb(1, 0, None)); // default microseconds
    f.extend(be.epb(0, 3 * 1024 + 512, &b)); // 3.5 s
    f.extend(be.pb(1, 2_000_001, &a)); // 2.000001 s
    f.extend(be.spb(&a));
    f.extend(be.epb(0, 1, &b)); // 1/1024 s = 976562.5 ns

    assert_eq!(
        CaptureReader::new(&f[..]).expect("shb").format(),
        CaptureFormat::PcapNg
    );
    let got = read_all(&f).expect("read");
    let frames: Vec<_> = got.iter().map(|p| (p.0, p.1, p.2)).collect();
    assert_eq!(
        frames,
        vec![
            (1, 1_500_000_000_123_456_789, 1),
            (2, 3_500_000_000, 101),
            (3, 2_000_001_000, 1),
            (4, 0, 101), // SPB: interface 0 of the section, no timestamp
            (5, 976_562, 101),
        ]
    );
    assert_eq!(got[0].3, a);
    assert_eq!(got[3].3, a);
    let tally = dscp_tally(&f[..]).expect("tally");
    assert_eq!(tally.packets, 5);
    assert_eq!(tally.ip_packets, 4); // the SPB is Ethernet read as raw IP: not IP
    assert_eq!(tally.by_dscp, [(24, 2), (46, 2)].into());
}

#[test]
fn pcapng_spb_respects_snaplen_and_unsupported_links_are_counted() {
    let ng = Ng { big: false };
    let a = ipv4(tos(46), 17, &udp());
    let mut f = ng.shb();
    f.extend(ng.idb(228, 24, None));
    f.extend(ng.spb(&a));
    f.extend(ng.idb(147, 0, None));
    f.extend(ng.epb(1, 0, &a));
    let got = read_all(&f).expect("read");
    assert_eq!(got[0].3, a[..24].to_vec());
    let tally = dscp_tally(&f[..]).expect("tally");
    assert_eq!(tally.packets, 2);
    assert_eq!(tally.by_dscp, [(46, 1)].into());
    assert_eq!(tally.unsupported_link_types, [(147, 1)].into());
}

#[test]
fn timestamp_resolutions() {
    assert_eq!(TsResol::Decimal(6).to_nanos(1), 1000);
    assert_eq!(TsResol::Decimal(9).to_nanos(7), 7);
    assert_eq!(TsResol::Decimal(12).to_nanos(5_000), 5);
    assert_eq!(TsResol::Decimal(0).to_nanos(3), 3_000_000_000);
    assert_eq!(TsResol::Binary(10).to_nanos(1024), 1_000_000_000);
    assert_eq!(TsResol::Binary(0).to_nanos(2), 2_000_000_000);
    assert_eq!(TsResol::Decimal(127).to_nanos(u64::MAX), 0);
    assert_eq!(TsResol::Binary(127).to_nanos(u64::MAX), 0);
    assert_eq!(TsResol::Decimal(0).to_nanos(u64::MAX), u64::MAX);
}

// ---------------------------------------------------------------- errors

fn err(bytes: &[u8]) -> PcapError {
    match dscp_tally(bytes) {
        Err(e) => e,
        Ok(t) => panic!("expected an error, got {t:?}"),
    }
}

#[test]
fn errors_are_reported_with_offsets() {
    assert!(matches!(err(&[]), PcapError::Empty));
    assert_eq!(err(&[]).to_string(), "empty file: not a packet capture");

    let e = err(b"GET / HTTP/1.1\r\n\r\n and more garbage");
    assert!(matches!(e, PcapError::BadMagic { offset: 0, .. }), "{e}");
    assert!(e.to_string().contains("not a packet capture"), "{e}");

    let a = ipv4(tos(46), 17, &udp());
    let good = pcap(false, false, 65535, 101, &[(1, 2, &a), (3, 4, &a)]);
    let e = err(&good[..10]);
    assert!(
        matches!(e, PcapError::Truncated { offset: 0, .. }),
        "truncated header: {e}"
    );
    let e = err(&good[..3]);
    assert!(matches!(e, PcapError::Truncated { .. }), "{e}");
    // Truncated record header and truncated record data, both in the second record.
    let second = 24 + 16 + a.len() as u64;
    for cut in [second as usize + 5, good.len() - 1] {
        let e = err(&good[..cut]);
        assert!(
            matches!(e, PcapError::Truncated { offset, .. } if offset == second),
            "cut {cut}: {e}"
        );
        assert!(e.to_string().contains(&format!("offset {second}")), "{e}");
    }

    // Huge snaplen in the file header, huge record length.
    let e = err(&pcap(false, false, 0x4000_0000, 1, &[]));
    assert!(matches!(e, PcapError::TooLarge { .. }), "{e}");
    let mut huge = pcap(true, false, 65535, 1, &[(1, 1, &a)]);
    huge[32..36].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
    let e = err(&huge);
    assert!(matches!(e, PcapError::TooLarge { offset: 24, .. }), "{e}");
    // Within the limit but far beyond the file: truncated, not allocated up front.
    huge[32..36].copy_from_slice(&(200u32 << 20).to_be_bytes());
    assert!(matches!(
        err(&huge),
        PcapError::Truncated { offset: 24, .. }
    ));
}

#[test]
fn pcapng_errors() {
    let ng = Ng { big: false };
    let a = ipv4(tos(46), 17, &udp());
    let mut good = ng.shb();
    let shb_len = good.len();
    good.extend(ng.idb(101, 0, None));
    let epb_at = good.len();
    good.extend(ng.epb(0, 0, &a));
    assert_eq!(read_all(&good).expect("good").len(), 1);

    let with_len = |at: usize, len: u32| {
        let mut f = good.clone();
        f[at + 4..at + 8].copy_from_slice(&len.to_le_bytes());
        f
    };
    let e = err(&with_len(epb_at, 0xffff_fff0));
    assert!(
        matches!(e, PcapError::TooLarge { offset, .. } if offset == epb_at as u64),
        "{e}"
    );
    let e = err(&with_len(epb_at, 50));
    assert!(matches!(e, PcapError::BadBlockLength { .. }), "{e}");
    assert!(e.to_string().contains("multiple of 4"), "{e}");
    let e = err(&with_len(epb_at, 8));
    assert!(matches!(e, PcapError::BadBlockLength { .. }), "{e}");
    let e = err(&with_len(0, 0x7fff_fff0));
    assert!(matches!(e, PcapError::TooLarge { offset: 0, .. }), "{e}");
    // Leading and trailing lengths disagree.
    let e = err(&with_len(epb_at, (good.len() - epb_at - 4) as u32));
    assert!(
        matches!(
            e,
            PcapError::BadBlockLength { .. } | PcapError::Truncated { .. }
        ),
        "{e}"
    );

    // Truncated block.
    let e = err(&good[..good.len() - 3]);
    assert!(
        matches!(e, PcapError::Truncated { offset, .. } if offset == epb_at as u64),
        "{e}"
    );
    let e = err(&good[..shb_len - 1]);
    assert!(matches!(e, PcapError::Truncated { offset: 0, .. }), "{e}");

    // Bad byte-order magic.
    let mut bad = good.clone();
    bad[8..12].copy_from_slice(&[1, 2, 3, 4]);
    assert!(matches!(err(&bad), PcapError::Malformed { offset: 8, .. }));

    // Huge interface snaplen.
    let mut f = ng.shb();
    f.extend(ng.idb(1, 0x2000_0000, None));
    assert!(matches!(err(&f), PcapError::TooLarge { .. }));

    // Packet on an undefined interface; SPB without interface; capture length too big.
    let mut f = ng.shb();
    f.extend(ng.epb(0, 0, &a));
    assert!(err(&f).to_string().contains("interface 0"));
    let mut f = ng.shb();
    f.extend(ng.spb(&a));
    assert!(matches!(err(&f), PcapError::Malformed { .. }));
    let mut f = good.clone();
    f[epb_at + 20..epb_at + 24].copy_from_slice(&1000u32.to_le_bytes());
    assert!(matches!(err(&f), PcapError::Malformed { .. }));

    // After an error the reader yields nothing more.
    let mut r = CaptureReader::new(&good[..good.len() - 3]).expect("shb");
    assert!(r.next_packet().is_err());
    assert!(matches!(r.next_packet(), Ok(None)));
}

#[test]
fn no_prefix_or_corruption_panics() {
    let le = Ng { big: false };
    let be = Ng { big: true };
    let pkt = eth(
        0x0800,
        &ipv4(
            0,
            47,
            &gre(
                0x1000,
                0x22eb,
                &[
                    &[0u8; 11][..],
                    &[1],
                    &[0u8; 8],
                    &eth(0x86dd, &ipv6(0, 0, &[41, 0, 0, 0, 0, 0, 0, 0])),
                ]
                .concat(),
            ),
        ),
    );
    let mut ng = le.shb();
    ng.extend(le.idb(1, 0, Some(0x85)));
    ng.extend(le.epb(0, 99, &pkt));
    ng.extend(be.shb());
    ng.extend(be.idb(113, 0, None));
    ng.extend(be.pb(0, 1, &pkt));
    ng.extend(be.spb(&pkt));
    let classic = pcap(true, true, 65535, 0, &[(1, 1, &pkt), (2, 2, &pkt)]);
    for file in [ng, classic] {
        for cut in 0..file.len() {
            let _ = dscp_tally(&file[..cut]);
        }
        for i in 0..file.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut f = file.clone();
                f[i] ^= flip;
                let _ = dscp_tally(&f[..]);
            }
        }
    }
    for link in 0..=300u16 {
        for cut in 0..pkt.len() {
            let _ = decode(link, &pkt[..cut]);
        }
    }
}

/// Hands out one byte per call, with an `Interrupted` error before each.
struct Trickle<'a> {
    data: &'a [u8],
    interrupt: bool,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.interrupt = !self.interrupt;
        if self.interrupt {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        match (self.data.split_first(), buf.first_mut()) {
            (Some((&b, rest)), Some(slot)) => {
                *slot = b;
                self.data = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

#[test]
fn reads_from_a_trickling_stream() {
    let le = Ng { big: false };
    let a = eth(0x0800, &ipv4(tos(46), 17, &udp()));
    let mut ng = le.shb();
    ng.extend(le.idb(1, 0, None));
    ng.extend(le.block(0x0bad, &[0u8; 64]));
    ng.extend(le.epb(0, 5, &a));
    let classic = pcap(false, false, 65535, 1, &[(1, 1, &a)]);
    for file in [ng, classic] {
        let tally = dscp_tally(Trickle {
            data: &file,
            interrupt: false,
        })
        .expect("tally");
        assert_eq!(tally.by_dscp, [(46, 1)].into());
    }
    // A failing reader is an I/O error with its offset, not a panic.
    struct Broken;
    impl std::io::Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk on fire"))
        }
    }
    assert!(matches!(
        dscp_tally(Broken),
        Err(PcapError::Io { offset: 0, .. })
    ));
}

/// Every row a reader yields, then its error (as text: kind and offset), if any.
fn rows<R: std::io::Read>(reader: Result<CaptureReader<R>, PcapError>) -> (Vec<Row>, String) {
    let mut r = match reader {
        Ok(r) => r,
        Err(e) => return (Vec::new(), e.to_string()),
    };
    let mut out = Vec::new();
    loop {
        match r.next_packet() {
            Ok(Some(p)) => out.push((
                p.frame,
                p.ts_nanos,
                p.link_type,
                p.data.to_vec(),
                p.orig_len,
            )),
            Ok(None) => return (out, String::new()),
            Err(e) => return (out, e.to_string()),
        }
    }
}

#[test]
fn read_ahead_yields_what_direct_reading_yields() {
    let small = eth(0x0800, &ipv4(tos(46), 17, &udp()));
    // Longer than the read-ahead headroom, and longer than a whole read block.
    let mid: Vec<u8> = (0..100 * 1024).map(|i| i as u8).collect();
    let big: Vec<u8> = (0..3 << 20).map(|i| (i / 7) as u8).collect();
    let mut records: Vec<(u32, u32, &[u8])> = Vec::new();
    for i in 0..30_000u32 {
        records.push((i, 0, &small));
        match i {
            5_000 | 5_001 => records.push((i, 1, &mid)),
            9_000 => records.push((i, 2, &big)),
            _ => {}
        }
    }
    let classic = pcap(false, false, 0, 1, &records);
    let le = Ng { big: false };
    let mut ng = le.shb();
    ng.extend(le.idb(1, 0, None));
    ng.extend(le.block(0x0bad, &big));
    for i in 0..30_000 {
        ng.extend(le.epb(0, i, &small));
        if i == 7_000 {
            ng.extend(le.epb(0, i, &mid));
        }
    }
    for file in [classic, ng] {
        for cut in [
            file.len(),
            file.len() - 1,
            file.len() / 2 + 3,
            1_100_000,
            23,
        ] {
            let part = file[..cut].to_vec();
            let direct = rows(CaptureReader::new(&part[..]));
            let ahead = rows(CaptureReader::with_read_ahead(std::io::Cursor::new(part)));
            if cut == file.len() {
                assert!(
                    direct.0.len() > 30_000 && direct.1.is_empty(),
                    "{}",
                    direct.1
                );
            }
            assert_eq!(direct, ahead, "cut {cut}");
        }
    }
    // A failing reader: the same error at the same offset.
    struct Broken;
    impl std::io::Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk on fire"))
        }
    }
    assert!(matches!(
        CaptureReader::with_read_ahead(Broken).map(|_| ()),
        Err(PcapError::Io { offset: 0, .. })
    ));
}

/// Records the size of every buffer the capture reader asks to fill.
struct Asks<'a> {
    data: &'a [u8],
    asks: Vec<usize>,
}

impl std::io::Read for Asks<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.asks.push(buf.len());
        let n = buf.len().min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Issue 15: the pcap_reader fuzz target ran 1,300 inputs per second because every capture,
/// however small, cost a zeroed 1 MiB buffer. A small capture is now read into a small
/// buffer, and a large one still gets READ_BLOCK-sized reads after a few doublings.
#[test]
fn r15_small_capture_is_read_without_a_megabyte_buffer() {
    use super::reader::{FIRST_READ, READ_BLOCK};
    let a = eth(0x0800, &ipv4(tos(46), 17, &udp()));
    let small = pcap(false, false, 65535, 1, &[(1, 1, &a)]);
    let mut src = Asks {
        data: &small,
        asks: Vec::new(),
    };
    let mut reader = CaptureReader::new(&mut src).expect("header");
    while reader.next_packet().expect("packet").is_some() {}
    drop(reader);
    assert!(
        src.asks.iter().all(|&n| n <= FIRST_READ),
        "asked for {:?}",
        src.asks
    );

    let records: Vec<(u32, u32, &[u8])> = (0..100_000).map(|i| (i, 0, &a[..])).collect();
    let big = pcap(false, false, 65535, 1, &records);
    assert!(big.len() > 4 * READ_BLOCK);
    let mut src = Asks {
        data: &big,
        asks: Vec::new(),
    };
    let tally = dscp_tally(&mut src).expect("tally");
    assert_eq!(tally.packets, 100_000);
    assert!(src.asks.len() < 20, "{} reads", src.asks.len());
    assert!(
        src.asks.iter().any(|&n| n >= READ_BLOCK / 2),
        "{:?}",
        src.asks
    );
}
