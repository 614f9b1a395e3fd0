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

/// Streaming reader over a pcap or pcapng file. Memory use is bounded by the read block
/// ([`READ_BLOCK`]) or the largest record, which is itself limited to [`MAX_BLOCK_LEN`].
///
/// The file is read in large blocks into one reusable buffer and records are parsed where
/// they lie: one `read` per block instead of one per record, and no copy of each record.
pub struct CaptureReader<R> {
    inner: Source<R>,
    /// Bytes consumed: the file offset of `buf[pos]`.
    offset: u64,
    frame: u64,
    format: CaptureFormat,
    state: State,
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[pos..end]`.
    pos: usize,
    end: usize,
    /// Bounds of the current packet's bytes in `buf`.
    data: (usize, usize),
}

/// Bytes asked of the underlying reader at a time (the buffer grows beyond this only for a
/// record that is larger, and only as its bytes arrive).
pub(crate) const READ_BLOCK: usize = 1 << 20;

/// The first read's size: the buffer doubles from here to [`READ_BLOCK`] as the file proves
/// longer (a large file reaches it within a few reads).
pub(crate) const FIRST_READ: usize = 8 * 1024;

/// Free bytes in front of each read-ahead block, where the unread tail of the previous block
/// (a record cut by the block boundary) is put so the record is contiguous without copying the
/// block.
const HEADROOM: usize = 64 * 1024;

/// Read-ahead blocks in existence (one being parsed, the rest being read or queued).
const AHEAD_BLOCKS: usize = 3;

enum Source<R> {
    Direct(R),
    Ahead(ReadAhead),
}

/// A thread that reads the file in blocks while the caller parses the previous one: the
/// kernel's copy into user memory overlaps with parsing. Bytes arrive in file order, so what
/// the reader yields is the same as without it.
struct ReadAhead {
    /// Filled blocks (data at `HEADROOM..HEADROOM + n`), `n == 0` at end of file.
    blocks: std::sync::mpsc::Receiver<io::Result<(Vec<u8>, usize)>>,
    /// Parsed blocks going back to the thread for reuse.
    spare: std::sync::mpsc::Sender<Vec<u8>>,
}

impl ReadAhead {
    fn spawn<R: Read + Send + 'static>(mut inner: R) -> io::Result<ReadAhead> {
        let (full_tx, blocks) = std::sync::mpsc::sync_channel(AHEAD_BLOCKS - 2);
        let (spare, spare_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        std::thread::Builder::new()
            .name("pcap-read-ahead".into())
            .spawn(move || {
                let mut made = 0;
                loop {
                    let mut block = match spare_rx.try_recv() {
                        Ok(b) => b,
                        Err(_) if made < AHEAD_BLOCKS => {
                            made += 1;
                            vec![0u8; HEADROOM + READ_BLOCK]
                        }
                        // The reader is gone (dropped after an error or the end): stop.
                        Err(_) => match spare_rx.recv() {
                            Ok(b) => b,
                            Err(_) => return,
                        },
                    };
                    let mut n = 0;
                    let result = loop {
                        let Some(room) = block.get_mut(HEADROOM + n..) else {
                            break Ok(());
                        };
                        if room.is_empty() {
                            break Ok(());
                        }
                        match inner.read(room) {
                            Ok(0) => break Ok(()),
                            Ok(got) => n += got,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => break Err(e),
                        }
                    };
                    // Bytes read before an error are delivered first, as a direct read would.
                    let last = result.is_err() || n == 0;
                    if n > 0 && full_tx.send(Ok((block, n))).is_err() {
                        return;
                    }
                    if let Err(e) = result {
                        let _ = full_tx.send(Err(e));
                        return;
                    }
                    if last {
                        let _ = full_tx.send(Ok((Vec::new(), 0)));
                        return;
                    }
                }
            })?;
        Ok(ReadAhead { blocks, spare })
    }
}

impl<R: Read + Send + 'static> CaptureReader<R> {
    /// Like [`CaptureReader::new`], with a thread reading the file ahead in blocks (for large
    /// files; the packets and errors are the same).
    pub fn with_read_ahead(inner: R) -> Result<Self, PcapError> {
        let ahead =
            ReadAhead::spawn(inner).map_err(|source| PcapError::Io { offset: 0, source })?;
        Self::start(Source::Ahead(ahead))
    }
}

impl<R: Read> CaptureReader<R> {
    /// Reads the file header (pcap) or first Section Header Block (pcapng).
    pub fn new(inner: R) -> Result<Self, PcapError> {
        Self::start(Source::Direct(inner))
    }

    fn start(inner: Source<R>) -> Result<Self, PcapError> {
        let mut reader = CaptureReader {
            inner,
            offset: 0,
            frame: 0,
            format: CaptureFormat::Pcap,
            state: State::Done,
            buf: Vec::new(),
            pos: 0,
            end: 0,
            data: (0, 0),
        };
        let got = reader.fill(4)?;
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
        let magic = reader.head::<4>();
        let le = u32::from_le_bytes(magic);
        let be = u32::from_be_bytes(magic);
        if le == PCAPNG_SHB {
            reader.format = CaptureFormat::PcapNg;
            reader.read_shb(0)?;
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
        let got = reader.fill(24)?;
        if got < 24 {
            return Err(PcapError::Truncated {
                what: "pcap file header",
                offset: 0,
                needed: 24,
                available: got as u64,
            });
        }
        let header = reader.head::<24>();
        let snaplen = endian.u32(&header, 16);
        if u64::from(snaplen) > MAX_SNAPLEN {
            return Err(PcapError::TooLarge {
                what: "pcap snapshot length",
                offset: 16,
                len: u64::from(snaplen),
                limit: MAX_SNAPLEN,
            });
        }
        // The upper 16 bits of the link-type field hold FCS information.
        let link_type = (endian.u32(&header, 20) & 0xffff) as u16;
        reader.consume(24);
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

    #[inline]
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
        let got = self.fill(16)?;
        if got < 16 {
            if got == 0 {
                return Ok(None);
            }
            return Err(PcapError::Truncated {
                what: "pcap record header",
                offset: start,
                needed: 16,
                available: got as u64,
            });
        }
        let hdr = self.head::<16>();
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
        // incl <= MAX_BLOCK_LEN, so this fits in usize.
        let total = 16 + incl as usize;
        let got = self.fill(total)?;
        if got < total {
            return Err(PcapError::Truncated {
                what: "pcap record",
                offset: start,
                needed: total as u64,
                available: got as u64,
            });
        }
        self.data = (self.pos + 16, self.pos + total);
        self.consume(total);
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
            let got = self.fill(8)?;
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
            let head = self.head::<8>();
            let mut type_bytes = [0u8; 4];
            type_bytes.copy_from_slice(&head[..4]);
            if u32::from_le_bytes(type_bytes) == PCAPNG_SHB {
                // A new section: its own byte order and interface list.
                self.read_shb(start)?;
                continue;
            }
            let State::PcapNg { endian, .. } = self.state else {
                return Ok(None);
            };
            let block_type = endian.u32(&head, 0);
            let len = u64::from(endian.u32(&head, 4));
            check_block_len(len, start)?;
            match block_type {
                BLOCK_IDB | BLOCK_EPB | BLOCK_SPB | BLOCK_PB => {
                    // check_block_len bounds len by MAX_BLOCK_LEN: it fits in usize.
                    let len = len as usize;
                    let got = self.fill(len)?;
                    if got < len {
                        return Err(PcapError::Truncated {
                            what: "pcapng block",
                            offset: start,
                            needed: len as u64,
                            available: got as u64,
                        });
                    }
                    self.check_trailer(endian, len, start)?;
                    let body = (self.pos + 8, self.pos + len - 4);
                    let meta = self.handle_block(block_type, endian, start, body);
                    self.consume(len);
                    if let Some(meta) = meta? {
                        return Ok(Some(meta));
                    }
                }
                _ => self.skip(len, "pcapng block", start)?,
            }
        }
    }

    /// Checks that the block of `len` bytes at `pos` ends with the same length.
    fn check_trailer(&self, endian: Endian, len: usize, start: u64) -> Result<(), PcapError> {
        let trailer = u64::from(endian.u32(&self.buf, self.pos + len - 4));
        if trailer != len as u64 {
            return Err(PcapError::BadBlockLength {
                offset: start,
                len: len as u64,
                reason: "the trailing block length differs from the leading one",
            });
        }
        Ok(())
    }

    /// Interprets the block body at `buf[body.0..body.1]`.
    fn handle_block(
        &mut self,
        block_type: u32,
        endian: Endian,
        start: u64,
        (body_start, body_end): (usize, usize),
    ) -> Result<Option<Meta>, PcapError> {
        let body = self.buf.get(body_start..body_end).unwrap_or(&[]);
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
                self.data = (body_start + 20, body_start + 20 + cap_len);
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
                self.data = (body_start + 4, body_start + 4 + cap);
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

    /// Reads the Section Header Block starting at `pos` (file offset `start`).
    fn read_shb(&mut self, start: u64) -> Result<(), PcapError> {
        let got = self.fill(12)?;
        if got < 12 {
            return Err(PcapError::Truncated {
                what: "pcapng section header",
                offset: start,
                needed: 12,
                available: got as u64,
            });
        }
        let head = self.head::<12>();
        let mut bom = [0u8; 4];
        bom.copy_from_slice(&head[8..12]);
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
        let len = len as usize;
        let got = self.fill(len)?;
        if got < len {
            return Err(PcapError::Truncated {
                what: "pcapng section header",
                offset: start,
                needed: len as u64,
                available: got as u64,
            });
        }
        self.check_trailer(endian, len, start)?;
        self.consume(len);
        self.state = State::PcapNg {
            endian,
            interfaces: Vec::new(),
        };
        Ok(())
    }

    /// The first `N` unconsumed bytes (the caller has made sure they are buffered).
    #[inline]
    fn head<const N: usize>(&self) -> [u8; N] {
        let mut a = [0u8; N];
        if let Some(s) = self.buf.get(self.pos..self.pos + N) {
            a.copy_from_slice(s);
        }
        a
    }

    #[inline]
    fn consume(&mut self, n: usize) {
        self.pos += n;
        self.offset += n as u64;
    }

    /// Makes at least `need` unconsumed bytes available unless the file ends first; returns
    /// how many are available (fewer than `need` only at end of file).
    #[inline]
    fn fill(&mut self, need: usize) -> Result<usize, PcapError> {
        let have = self.end - self.pos;
        if have >= need {
            return Ok(have);
        }
        self.fill_slow(need)
    }

    #[cold]
    fn fill_slow(&mut self, need: usize) -> Result<usize, PcapError> {
        if let Source::Ahead(_) = self.inner {
            return self.fill_ahead(need);
        }
        while self.end - self.pos < need {
            if self.end == self.buf.len() {
                if self.pos > 0 {
                    // Move the partial record to the front to make room.
                    self.buf.copy_within(self.pos..self.end, 0);
                    self.end -= self.pos;
                    self.pos = 0;
                }
                // Grow only as data actually arrives (at most doubling), so a length field
                // that lies costs no more memory than the file holds; start small and double
                // up to READ_BLOCK, so a small capture costs no megabyte of zeroed memory.
                let len = self.buf.len();
                if self.end == len || len < READ_BLOCK {
                    let grown = if len == 0 {
                        FIRST_READ
                    } else {
                        len.saturating_mul(2).min(need.max(READ_BLOCK))
                    };
                    self.buf.resize(grown, 0);
                }
                continue;
            }
            let Some(room) = self.buf.get_mut(self.end..) else {
                break;
            };
            let Source::Direct(inner) = &mut self.inner else {
                break;
            };
            match inner.read(room) {
                Ok(0) => break,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(PcapError::Io {
                        offset: self.offset + (self.end - self.pos) as u64,
                        source,
                    })
                }
            }
        }
        Ok(self.end - self.pos)
    }

    /// `fill` from read-ahead blocks: the unread tail moves into the next block's headroom
    /// (or, for a record longer than the headroom, blocks are appended to it).
    fn fill_ahead(&mut self, need: usize) -> Result<usize, PcapError> {
        while self.end - self.pos < need {
            let Source::Ahead(ahead) = &self.inner else {
                break;
            };
            let (block, n) = match ahead.blocks.recv() {
                // The thread ended after the end of file or an error already delivered.
                Err(_) => break,
                Ok(Err(source)) => {
                    return Err(PcapError::Io {
                        offset: self.offset + (self.end - self.pos) as u64,
                        source,
                    })
                }
                Ok(Ok((_, 0))) => break,
                Ok(Ok(b)) => b,
            };
            let tail = self.end - self.pos;
            if tail > HEADROOM {
                // A long record: gather it in a buffer of its own, grown as data arrives.
                self.buf.copy_within(self.pos..self.end, 0);
                self.buf.truncate(tail);
                self.buf
                    .extend_from_slice(block.get(HEADROOM..HEADROOM + n).unwrap_or(&[]));
                self.pos = 0;
                self.end = self.buf.len();
                let _ = ahead.spare.send(block);
                continue;
            }
            let mut block = block;
            let at = HEADROOM - tail;
            if let (Some(dst), Some(src)) = (
                block.get_mut(at..HEADROOM),
                self.buf.get(self.pos..self.end),
            ) {
                dst.copy_from_slice(src);
            }
            let old = std::mem::replace(&mut self.buf, block);
            if old.len() == HEADROOM + READ_BLOCK {
                let _ = ahead.spare.send(old);
            }
            self.pos = at;
            self.end = HEADROOM + n;
        }
        Ok(self.end - self.pos)
    }

    /// Discards exactly `n` bytes (a block of file offset `start`) without keeping them.
    fn skip(&mut self, n: u64, what: &'static str, start: u64) -> Result<(), PcapError> {
        let mut left = n;
        loop {
            let have = (self.end - self.pos) as u64;
            if have >= left {
                self.consume(left as usize);
                return Ok(());
            }
            self.consume(have as usize);
            left -= have;
            self.pos = 0;
            self.end = 0;
            if self.fill(1)? == 0 {
                return Err(PcapError::Truncated {
                    what,
                    offset: start,
                    needed: n,
                    available: n - left,
                });
            }
        }
    }
}

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
