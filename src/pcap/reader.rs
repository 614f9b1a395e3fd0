//! Streaming reader for classic pcap and pcapng files.

use std::io::{self, Read};

/// Largest record or block accepted (256 MiB); anything claiming more is refused, not allocated.
pub const MAX_BLOCK_LEN: u64 = 256 * 1024 * 1024;
/// Largest snapshot length accepted in a file or interface header (256 MiB).
pub const MAX_SNAPLEN: u64 = 256 * 1024 * 1024;

const PCAP_MAGIC_US: u32 = 0xa1b2_c3d4;
const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BOM: u32 = 0x1a2b_3c4d;
const BLOCK_IDB: u32 = 1;
const BLOCK_PB: u32 = 2;
const BLOCK_SPB: u32 = 3;
const BLOCK_EPB: u32 = 6;

/// Why a capture could not be read. Every variant but [`PcapError::Empty`] carries the byte
/// offset in the file where the problem starts.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// The file holds no bytes at all.
    #[error("empty file: not a packet capture")]
    Empty,
    /// The first four bytes are neither a pcap nor a pcapng magic number.
    #[error("not a packet capture (pcap or pcapng): unknown magic number {magic:#010x} at byte offset {offset}")]
    BadMagic { offset: u64, magic: u32 },
    /// The file ends in the middle of a header, record or block.
    #[error(
        "truncated {what} at byte offset {offset}: {needed} bytes needed, only {available} present"
    )]
    Truncated {
        what: &'static str,
        offset: u64,
        needed: u64,
        available: u64,
    },
    /// A pcapng block length that cannot be right (too small, not a multiple of 4, or the
    /// trailing copy differs).
    #[error("bad pcapng block length {len} at byte offset {offset}: {reason}")]
    BadBlockLength {
        offset: u64,
        len: u64,
        reason: &'static str,
    },
    /// A record, block or snapshot length above [`MAX_BLOCK_LEN`] / [`MAX_SNAPLEN`].
    #[error("{what} of {len} bytes at byte offset {offset} exceeds the limit of {limit} bytes")]
    TooLarge {
        what: &'static str,
        offset: u64,
        len: u64,
        limit: u64,
    },
    /// A structurally invalid header, block or record.
    #[error("malformed {what} at byte offset {offset}: {reason}")]
    Malformed {
        what: &'static str,
        offset: u64,
        reason: String,
    },
    /// The underlying reader failed.
    #[error("I/O error at byte offset {offset}: {source}")]
    Io { offset: u64, source: io::Error },
}

impl PcapError {
    /// Byte offset in the file where the problem starts (`None` for an empty file).
    pub fn offset(&self) -> Option<u64> {
        match self {
            PcapError::Empty => None,
            PcapError::BadMagic { offset, .. }
            | PcapError::Truncated { offset, .. }
            | PcapError::BadBlockLength { offset, .. }
            | PcapError::TooLarge { offset, .. }
            | PcapError::Malformed { offset, .. }
            | PcapError::Io { offset, .. } => Some(*offset),
        }
    }
}

/// Container format of a capture file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureFormat {
    /// Classic libpcap, microsecond timestamps.
    Pcap,
    /// Classic libpcap, nanosecond timestamps (magic a1b23c4d).
    PcapNanos,
    /// pcapng.
    PcapNg,
}

/// One packet record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// 1-based number counting every packet record in the file, as Wireshark numbers frames.
    pub frame: u64,
    /// Timestamp in nanoseconds since the Unix epoch (saturating).
    pub ts_nanos: u64,
    /// LINKTYPE_* of the interface the packet was captured on.
    pub link_type: u16,
    /// Captured bytes (possibly fewer than `orig_len`).
    pub data: &'a [u8],
    /// Length of the packet on the wire.
    pub orig_len: u32,
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    link_type: u16,
    snaplen: u32,
    /// Timestamp unit: 10^-n (decimal) or 2^-n (binary).
    tsresol: TsResol,
    /// Seconds added to every timestamp (if_tsoffset).
    tsoffset: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TsResol {
    Decimal(u8),
    Binary(u8),
}

impl TsResol {
    fn from_option(byte: u8) -> TsResol {
        if byte & 0x80 != 0 {
            TsResol::Binary(byte & 0x7f)
        } else {
            TsResol::Decimal(byte)
        }
    }

    /// Converts a count of units into nanoseconds, saturating at `u64::MAX`.
    pub(crate) fn to_nanos(self, units: u64) -> u64 {
        let scaled = u128::from(units) * 1_000_000_000;
        let nanos = match self {
            TsResol::Decimal(n) => match 10u128.checked_pow(u32::from(n)) {
                Some(div) => scaled / div,
                None => 0,
            },
            TsResol::Binary(n) => scaled >> n,
        };
        u64::try_from(nanos).unwrap_or(u64::MAX)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    fn u16(self, b: &[u8], at: usize) -> u16 {
        let mut a = [0u8; 2];
        if let Some(s) = b.get(at..at + 2) {
            a.copy_from_slice(s);
        }
        match self {
            Endian::Little => u16::from_le_bytes(a),
            Endian::Big => u16::from_be_bytes(a),
        }
    }

    fn u32(self, b: &[u8], at: usize) -> u32 {
        let mut a = [0u8; 4];
        if let Some(s) = b.get(at..at + 4) {
            a.copy_from_slice(s);
        }
        match self {
            Endian::Little => u32::from_le_bytes(a),
            Endian::Big => u32::from_be_bytes(a),
        }
    }

    fn u64(self, b: &[u8], at: usize) -> u64 {
        let mut a = [0u8; 8];
        if let Some(s) = b.get(at..at + 8) {
            a.copy_from_slice(s);
        }
        match self {
            Endian::Little => u64::from_le_bytes(a),
            Endian::Big => u64::from_be_bytes(a),
        }
    }
}

enum State {
    Pcap {
        endian: Endian,
        nanos: bool,
        link_type: u16,
    },
    PcapNg {
        endian: Endian,
        interfaces: Vec<Interface>,
    },
    /// An error was returned, or the end was reached: yield nothing more.
    Done,
}

/// Most interfaces accepted per pcapng section (keeps memory bounded).
const MAX_INTERFACES: usize = 65_536;

/// Streaming reader over a pcap or pcapng file. Memory use is bounded by the largest record,
/// which is itself limited to [`MAX_BLOCK_LEN`].
pub struct CaptureReader<R> {
    inner: R,
    offset: u64,
    frame: u64,
    format: CaptureFormat,
    state: State,
    buf: Vec<u8>,
    /// Bounds of the current packet's bytes in `buf`.
    data: (usize, usize),
}

impl<R: Read> CaptureReader<R> {
    /// Reads the file header (pcap) or first Section Header Block (pcapng).
    pub fn new(inner: R) -> Result<Self, PcapError> {
        let mut reader = CaptureReader {
            inner,
            offset: 0,
            frame: 0,
            format: CaptureFormat::Pcap,
            state: State::Done,
            buf: Vec::new(),
            data: (0, 0),
        };
        let mut magic = [0u8; 4];
        let got = reader.read_some(&mut magic)?;
        if got == 0 {
            return Err(PcapError::Empty);
        }
        if got < 4 {
            return Err(PcapError::Truncated {
                what: "file header",
                offset: 0,
                needed: 24,
                available: got as u64,
            });
        }
        let le = u32::from_le_bytes(magic);
        let be = u32::from_be_bytes(magic);
        if le == PCAPNG_SHB {
            reader.format = CaptureFormat::PcapNg;
            reader.read_shb(0, magic)?;
            return Ok(reader);
        }
        let (endian, nanos) = match (le, be) {
            (PCAP_MAGIC_US, _) => (Endian::Little, false),
            (PCAP_MAGIC_NS, _) => (Endian::Little, true),
            (_, PCAP_MAGIC_US) => (Endian::Big, false),
            (_, PCAP_MAGIC_NS) => (Endian::Big, true),
            _ => {
                return Err(PcapError::BadMagic {
                    offset: 0,
                    magic: be,
                })
            }
        };
        let mut rest = [0u8; 20];
        reader.read_full(&mut rest, "pcap file header", 0, 24)?;
        let snaplen = endian.u32(&rest, 12);
        if u64::from(snaplen) > MAX_SNAPLEN {
            return Err(PcapError::TooLarge {
                what: "pcap snapshot length",
                offset: 16,
                len: u64::from(snaplen),
                limit: MAX_SNAPLEN,
            });
        }
        // The upper 16 bits of the link-type field hold FCS information.
        let link_type = (endian.u32(&rest, 16) & 0xffff) as u16;
        reader.format = if nanos {
            CaptureFormat::PcapNanos
        } else {
            CaptureFormat::Pcap
        };
        reader.state = State::Pcap {
            endian,
            nanos,
            link_type,
        };
        Ok(reader)
    }

    /// Container format of the file.
    pub fn format(&self) -> CaptureFormat {
        self.format
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next packet, `Ok(None)` at a clean end of file. After an error, returns `Ok(None)`.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, PcapError> {
        let result = match self.state {
            State::Pcap { .. } => self.next_pcap(),
            State::PcapNg { .. } => self.next_pcapng(),
            State::Done => Ok(None),
        };
        match result {
            Ok(Some(meta)) => {
                let data = self.buf.get(self.data.0..self.data.1).unwrap_or(&[]);
                Ok(Some(Packet {
                    frame: meta.frame,
                    ts_nanos: meta.ts_nanos,
                    link_type: meta.link_type,
                    data,
                    orig_len: meta.orig_len,
                }))
            }
            Ok(None) => {
                self.state = State::Done;
                Ok(None)
            }
            Err(e) => {
                self.state = State::Done;
                Err(e)
            }
        }
    }

    fn next_pcap(&mut self) -> Result<Option<Meta>, PcapError> {
        let State::Pcap {
            endian,
            nanos,
            link_type,
        } = self.state
        else {
            return Ok(None);
        };
        let start = self.offset;
        let mut hdr = [0u8; 16];
        let got = self.read_some(&mut hdr)?;
        if got == 0 {
            return Ok(None);
        }
        if got < 16 {
            return Err(PcapError::Truncated {
                what: "pcap record header",
                offset: start,
                needed: 16,
                available: got as u64,
            });
        }
        let secs = u64::from(endian.u32(&hdr, 0));
        let frac = u64::from(endian.u32(&hdr, 4));
        let incl = u64::from(endian.u32(&hdr, 8));
        let orig_len = endian.u32(&hdr, 12);
        if incl > MAX_BLOCK_LEN {
            return Err(PcapError::TooLarge {
                what: "pcap record",
                offset: start,
                len: incl,
                limit: MAX_BLOCK_LEN,
            });
        }
        self.read_into_buf(incl, "pcap record", start)?;
        self.data = (0, self.buf.len());
        self.frame += 1;
        let frac_nanos = if nanos {
            frac
        } else {
            frac.saturating_mul(1000)
        };
        Ok(Some(Meta {
            frame: self.frame,
            ts_nanos: secs
                .saturating_mul(1_000_000_000)
                .saturating_add(frac_nanos),
            link_type,
            orig_len,
        }))
    }

    fn next_pcapng(&mut self) -> Result<Option<Meta>, PcapError> {
        loop {
            let start = self.offset;
            let mut head = [0u8; 8];
            let got = self.read_some(&mut head)?;
            if got == 0 {
                return Ok(None);
            }
            if got < 8 {
                return Err(PcapError::Truncated {
                    what: "pcapng block header",
                    offset: start,
                    needed: 8,
                    available: got as u64,
                });
            }
            let mut type_bytes = [0u8; 4];
            type_bytes.copy_from_slice(&head[..4]);
            if u32::from_le_bytes(type_bytes) == PCAPNG_SHB {
                // A new section: its own byte order and interface list. The length bytes were
                // already read; re-assemble the 8 header bytes for the SHB reader.
                self.read_shb_after_head(start, head)?;
                continue;
            }
            let State::PcapNg { endian, .. } = self.state else {
                return Ok(None);
            };
            let block_type = endian.u32(&head, 0);
            let len = u64::from(endian.u32(&head, 4));
            check_block_len(len, start)?;
            let body_len = len - 12;
            match block_type {
                BLOCK_IDB | BLOCK_EPB | BLOCK_SPB | BLOCK_PB => {
                    self.read_into_buf(body_len + 4, "pcapng block", start)?;
                    self.check_trailer(endian, len, start)?;
                    if let Some(meta) = self.handle_block(block_type, endian, start)? {
                        return Ok(Some(meta));
                    }
                }
                _ => self.skip(body_len + 4, "pcapng block", start)?,
            }
        }
    }

    fn check_trailer(&self, endian: Endian, len: u64, start: u64) -> Result<(), PcapError> {
        let at = self.buf.len().saturating_sub(4);
        let trailer = u64::from(endian.u32(&self.buf, at));
        if trailer != len {
            return Err(PcapError::BadBlockLength {
                offset: start,
                len,
                reason: "the trailing block length differs from the leading one",
            });
        }
        Ok(())
    }

    /// Interprets the block body now in `buf` (followed by the 4 trailer bytes).
    fn handle_block(
        &mut self,
        block_type: u32,
        endian: Endian,
        start: u64,
    ) -> Result<Option<Meta>, PcapError> {
        let body_end = self.buf.len().saturating_sub(4);
        let body = self.buf.get(..body_end).unwrap_or(&[]);
        let State::PcapNg { interfaces, .. } = &mut self.state else {
            return Ok(None);
        };
        let malformed = |reason: String| PcapError::Malformed {
            what: "pcapng block",
            offset: start,
            reason,
        };
        match block_type {
            BLOCK_IDB => {
                if body.len() < 8 {
                    return Err(malformed(
                        "Interface Description Block shorter than 8 bytes".into(),
                    ));
                }
                let link_type = endian.u16(body, 0);
                let snaplen = endian.u32(body, 4);
                if u64::from(snaplen) > MAX_SNAPLEN {
                    return Err(PcapError::TooLarge {
                        what: "interface snapshot length",
                        offset: start + 16,
                        len: u64::from(snaplen),
                        limit: MAX_SNAPLEN,
                    });
                }
                let mut iface = Interface {
                    link_type,
                    snaplen,
                    tsresol: TsResol::Decimal(6),
                    tsoffset: 0,
                };
                for (code, value) in Options::new(body.get(8..).unwrap_or(&[]), endian) {
                    match code {
                        9 => {
                            if let Some(&b) = value.first() {
                                iface.tsresol = TsResol::from_option(b);
                            }
                        }
                        14 if value.len() >= 8 => {
                            iface.tsoffset = endian.u64(value, 0) as i64;
                        }
                        _ => {}
                    }
                }
                if interfaces.len() >= MAX_INTERFACES {
                    return Err(malformed(format!(
                        "more than {MAX_INTERFACES} interfaces in one section"
                    )));
                }
                interfaces.push(iface);
                Ok(None)
            }
            BLOCK_EPB | BLOCK_PB => {
                if body.len() < 20 {
                    return Err(malformed("packet block shorter than 20 bytes".into()));
                }
                let if_id = if block_type == BLOCK_EPB {
                    endian.u32(body, 0)
                } else {
                    u32::from(endian.u16(body, 0))
                };
                let iface = *usize::try_from(if_id)
                    .ok()
                    .and_then(|i| interfaces.get(i))
                    .ok_or_else(|| {
                        malformed(format!(
                            "packet refers to interface {if_id}, but the section defines {}",
                            interfaces.len()
                        ))
                    })?;
                let ts = (u64::from(endian.u32(body, 4)) << 32) | u64::from(endian.u32(body, 8));
                let cap_len = endian.u32(body, 12) as usize;
                let orig_len = endian.u32(body, 16);
                if cap_len > body.len() - 20 {
                    return Err(malformed(format!(
                        "captured length {cap_len} exceeds the {} bytes of packet data in the block",
                        body.len() - 20
                    )));
                }
                self.data = (20, 20 + cap_len);
                self.frame += 1;
                Ok(Some(Meta {
                    frame: self.frame,
                    ts_nanos: iface
                        .tsresol
                        .to_nanos(ts)
                        .saturating_add_signed(iface.tsoffset.saturating_mul(1_000_000_000)),
                    link_type: iface.link_type,
                    orig_len,
                }))
            }
            BLOCK_SPB => {
                if body.len() < 4 {
                    return Err(malformed("Simple Packet Block shorter than 4 bytes".into()));
                }
                let iface = *interfaces.first().ok_or_else(|| {
                    malformed("Simple Packet Block before any Interface Description Block".into())
                })?;
                let orig_len = endian.u32(body, 0);
                let mut cap = (body.len() - 4).min(orig_len as usize);
                if iface.snaplen != 0 {
                    cap = cap.min(iface.snaplen as usize);
                }
                self.data = (4, 4 + cap);
                self.frame += 1;
                Ok(Some(Meta {
                    frame: self.frame,
                    ts_nanos: 0,
                    link_type: iface.link_type,
                    orig_len,
                }))
            }
            _ => Ok(None),
        }
    }

    /// Reads an SHB whose first four bytes (the block type) were already consumed.
    fn read_shb(&mut self, start: u64, type_bytes: [u8; 4]) -> Result<(), PcapError> {
        let mut len_bytes = [0u8; 4];
        self.read_full(&mut len_bytes, "pcapng section header", start, 12)?;
        let mut head = [0u8; 8];
        head[..4].copy_from_slice(&type_bytes);
        head[4..].copy_from_slice(&len_bytes);
        self.read_shb_after_head(start, head)
    }

    /// Reads an SHB whose first eight bytes (type and length) were already consumed.
    fn read_shb_after_head(&mut self, start: u64, head: [u8; 8]) -> Result<(), PcapError> {
        let mut bom = [0u8; 4];
        self.read_full(&mut bom, "pcapng section header", start, 12)?;
        let endian = if u32::from_le_bytes(bom) == PCAPNG_BOM {
            Endian::Little
        } else if u32::from_be_bytes(bom) == PCAPNG_BOM {
            Endian::Big
        } else {
            return Err(PcapError::Malformed {
                what: "pcapng section header",
                offset: start + 8,
                reason: format!(
                    "byte-order magic is {:#010x}, expected 0x1a2b3c4d",
                    u32::from_be_bytes(bom)
                ),
            });
        };
        let len = u64::from(endian.u32(&head, 4));
        check_block_len(len, start)?;
        if len < 28 {
            return Err(PcapError::BadBlockLength {
                offset: start,
                len,
                reason: "a Section Header Block is at least 28 bytes",
            });
        }
        // Version, section length and options: not needed for reading packets.
        self.read_into_buf(len - 12, "pcapng section header", start)?;
        self.check_trailer(endian, len, start)?;
        self.state = State::PcapNg {
            endian,
            interfaces: Vec::new(),
        };
        Ok(())
    }

    /// Reads until `buf` is full or end of file; returns the number of bytes read.
    fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, PcapError> {
        let mut filled = 0;
        while filled < buf.len() {
            let Some(rest) = buf.get_mut(filled..) else {
                break;
            };
            match self.inner.read(rest) {
                Ok(0) => break,
                Ok(n) => {
                    filled += n;
                    self.offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(PcapError::Io {
                        offset: self.offset,
                        source,
                    })
                }
            }
        }
        Ok(filled)
    }

    /// Fills `buf` completely or reports the structure (`what`, starting at `start`, `needed`
    /// bytes long in total) as truncated.
    fn read_full(
        &mut self,
        buf: &mut [u8],
        what: &'static str,
        start: u64,
        needed: u64,
    ) -> Result<(), PcapError> {
        let got = self.read_some(buf)?;
        if got < buf.len() {
            return Err(PcapError::Truncated {
                what,
                offset: start,
                needed,
                available: self.offset - start,
            });
        }
        Ok(())
    }

    /// Reads exactly `n` bytes into `self.buf`, growing it only as data actually arrives.
    fn read_into_buf(&mut self, n: u64, what: &'static str, start: u64) -> Result<(), PcapError> {
        self.buf.clear();
        // Usual records (up to 64 KiB, or what the buffer already holds): one sized read,
        // no read_to_end machinery per packet. Bigger ones grow the buffer only as data comes.
        if n <= FAST_RECORD.max(self.buf.capacity() as u64) {
            let header = self.offset - start;
            self.buf.resize(n as usize, 0);
            let mut buf = std::mem::take(&mut self.buf);
            let got = self.read_some(&mut buf);
            self.buf = buf;
            let got = got? as u64;
            if got < n {
                self.buf.truncate(got as usize);
                return Err(PcapError::Truncated {
                    what,
                    offset: start,
                    needed: header + n,
                    available: header + got,
                });
            }
            return Ok(());
        }
        let got = match (&mut self.inner).take(n).read_to_end(&mut self.buf) {
            Ok(got) => got as u64,
            Err(source) => {
                return Err(PcapError::Io {
                    offset: self.offset + self.buf.len() as u64,
                    source,
                })
            }
        };
        let header = self.offset - start;
        self.offset += got;
        if got < n {
            return Err(PcapError::Truncated {
                what,
                offset: start,
                needed: header + n,
                available: header + got,
            });
        }
        Ok(())
    }

    /// Discards exactly `n` bytes without buffering them.
    fn skip(&mut self, n: u64, what: &'static str, start: u64) -> Result<(), PcapError> {
        let got = match io::copy(&mut (&mut self.inner).take(n), &mut io::sink()) {
            Ok(got) => got,
            Err(source) => {
                return Err(PcapError::Io {
                    offset: self.offset,
                    source,
                })
            }
        };
        let header = self.offset - start;
        self.offset += got;
        if got < n {
            return Err(PcapError::Truncated {
                what,
                offset: start,
                needed: header + n,
                available: header + got,
            });
        }
        Ok(())
    }
}

/// Records up to this size are read with one sized read (see `read_into_buf`).
const FAST_RECORD: u64 = 64 * 1024;

struct Meta {
    frame: u64,
    ts_nanos: u64,
    link_type: u16,
    orig_len: u32,
}

fn check_block_len(len: u64, start: u64) -> Result<(), PcapError> {
    if len < 12 {
        return Err(PcapError::BadBlockLength {
            offset: start,
            len,
            reason: "a block is at least 12 bytes",
        });
    }
    if len % 4 != 0 {
        return Err(PcapError::BadBlockLength {
            offset: start,
            len,
            reason: "not a multiple of 4",
        });
    }
    if len > MAX_BLOCK_LEN {
        return Err(PcapError::TooLarge {
            what: "pcapng block",
            offset: start,
            len,
            limit: MAX_BLOCK_LEN,
        });
    }
    Ok(())
}

/// Iterator over pcapng options `(code, value)`, stopping at opt_endofopt or malformed data.
struct Options<'a> {
    data: &'a [u8],
    endian: Endian,
}

impl<'a> Options<'a> {
    fn new(data: &'a [u8], endian: Endian) -> Self {
        Options { data, endian }
    }
}

impl<'a> Iterator for Options<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.data.len() < 4 {
            return None;
        }
        let code = self.endian.u16(self.data, 0);
        let len = usize::from(self.endian.u16(self.data, 2));
        if code == 0 {
            return None;
        }
        let value = self.data.get(4..4 + len)?;
        let padded = 4 + len.div_ceil(4) * 4;
        self.data = self.data.get(padded..).unwrap_or(&[]);
        Some((code, value))
    }
}
