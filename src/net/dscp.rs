//! Differentiated Services Code Point (RFC 2474) as a checked value type.
//!
//! APIs in ucm never take raw ToS / traffic-class bytes: they take a
//! [`Dscp`], and the conversion to the on-the-wire byte (`dscp << 2`, the two
//! low bits being ECN) happens in exactly one place, [`Dscp::tos`].

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A DSCP value, guaranteed to be in `0..=63`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dscp(u8);

/// Error returned by [`Dscp::new`] for a value above 63.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("DSCP value {0} is out of range (expected 0..=63)")]
pub struct InvalidDscp(pub u8);

/// Error returned when parsing a [`Dscp`] from text fails.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid DSCP {input:?}: expected a number 0..=63, hex 0x00..=0x3f \
     or a codepoint name such as CS3, EF, AF41, default"
)]
pub struct ParseDscpError {
    input: String,
}

impl ParseDscpError {
    fn new(input: &str) -> Self {
        ParseDscpError {
            input: input.to_owned(),
        }
    }

    /// The text that failed to parse.
    pub fn input(&self) -> &str {
        &self.input
    }
}

/// Standard names (Wireshark spelling) for the codepoints that have one.
const NAMES: &[(u8, &str)] = &[
    (0, "CS0"),
    (1, "LE"),
    (8, "CS1"),
    (10, "AF11"),
    (12, "AF12"),
    (14, "AF13"),
    (16, "CS2"),
    (18, "AF21"),
    (20, "AF22"),
    (22, "AF23"),
    (24, "CS3"),
    (26, "AF31"),
    (28, "AF32"),
    (30, "AF33"),
    (32, "CS4"),
    (34, "AF41"),
    (36, "AF42"),
    (38, "AF43"),
    (40, "CS5"),
    (44, "VOICE-ADMIT"),
    (46, "EF"),
    (48, "CS6"),
    (56, "CS7"),
];

/// Extra names accepted by [`FromStr`] (compared after upper-casing and
/// mapping `_` to `-`).
const ALIASES: &[(&str, u8)] = &[
    ("DEFAULT", 0),
    ("BE", 0),
    ("DF", 0),
    ("VA", 44),
    ("VOICEADMIT", 44),
];

impl Dscp {
    /// Default forwarding / best effort (0).
    pub const DEFAULT: Dscp = Dscp(0);
    /// Class selector 0, same as [`Dscp::DEFAULT`].
    pub const CS0: Dscp = Dscp(0);
    /// Lower effort (RFC 8622).
    pub const LE: Dscp = Dscp(1);
    /// Class selector 1 (scavenger).
    pub const CS1: Dscp = Dscp(8);
    /// Assured forwarding class 1, low drop.
    pub const AF11: Dscp = Dscp(10);
    /// Assured forwarding class 1, medium drop.
    pub const AF12: Dscp = Dscp(12);
    /// Assured forwarding class 1, high drop.
    pub const AF13: Dscp = Dscp(14);
    /// Class selector 2 (OAM).
    pub const CS2: Dscp = Dscp(16);
    /// Assured forwarding class 2, low drop.
    pub const AF21: Dscp = Dscp(18);
    /// Assured forwarding class 2, medium drop.
    pub const AF22: Dscp = Dscp(20);
    /// Assured forwarding class 2, high drop.
    pub const AF23: Dscp = Dscp(22);
    /// Class selector 3: Cisco call signalling (SIP, SCCP).
    pub const CS3: Dscp = Dscp(24);
    /// Assured forwarding class 3, low drop.
    pub const AF31: Dscp = Dscp(26);
    /// Assured forwarding class 3, medium drop.
    pub const AF32: Dscp = Dscp(28);
    /// Assured forwarding class 3, high drop.
    pub const AF33: Dscp = Dscp(30);
    /// Class selector 4.
    pub const CS4: Dscp = Dscp(32);
    /// Assured forwarding class 4, low drop: Cisco interactive video.
    pub const AF41: Dscp = Dscp(34);
    /// Assured forwarding class 4, medium drop.
    pub const AF42: Dscp = Dscp(36);
    /// Assured forwarding class 4, high drop.
    pub const AF43: Dscp = Dscp(38);
    /// Class selector 5.
    pub const CS5: Dscp = Dscp(40);
    /// Voice-admit (RFC 5865), capacity-admitted voice.
    pub const VOICE_ADMIT: Dscp = Dscp(44);
    /// Expedited forwarding: voice bearer (RTP).
    pub const EF: Dscp = Dscp(46);
    /// Class selector 6 (network control).
    pub const CS6: Dscp = Dscp(48);
    /// Class selector 7.
    pub const CS7: Dscp = Dscp(56);

    /// Largest valid DSCP value.
    pub const MAX: u8 = 63;

    /// Checked constructor: `value` must be in `0..=63`.
    pub const fn new(value: u8) -> Result<Dscp, InvalidDscp> {
        if value <= Self::MAX {
            Ok(Dscp(value))
        } else {
            Err(InvalidDscp(value))
        }
    }

    /// The 6-bit codepoint.
    pub const fn value(self) -> u8 {
        self.0
    }

    /// The ToS / traffic-class byte with ECN bits clear (`dscp << 2`).
    pub const fn tos(self) -> u8 {
        self.0 << 2
    }

    /// The DSCP carried in a ToS / traffic-class byte (the 2 ECN bits are
    /// dropped).
    pub const fn from_tos(tos: u8) -> Dscp {
        Dscp(tos >> 2)
    }

    /// The standard name of this codepoint ("CS3", "EF", "AF41", ...), if it
    /// has one.
    pub fn name(self) -> Option<&'static str> {
        NAMES
            .iter()
            .find(|(v, _)| *v == self.0)
            .map(|(_, name)| *name)
    }
}

impl Default for Dscp {
    fn default() -> Self {
        Dscp::DEFAULT
    }
}

impl TryFrom<u8> for Dscp {
    type Error = InvalidDscp;

    fn try_from(value: u8) -> Result<Self, Self::Error> {
        Dscp::new(value)
    }
}

impl From<Dscp> for u8 {
    fn from(d: Dscp) -> u8 {
        d.value()
    }
}

impl fmt::Display for Dscp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.pad(name),
            None => fmt::Display::fmt(&self.0, f),
        }
    }
}

impl FromStr for Dscp {
    type Err = ParseDscpError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let err = || ParseDscpError::new(s);
        if t.is_empty() {
            return Err(err());
        }
        if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            let v = u32::from_str_radix(hex, 16).map_err(|_| err())?;
            return small(v).ok_or_else(err);
        }
        if t.bytes().all(|b| b.is_ascii_digit()) {
            let v: u32 = t.parse().map_err(|_| err())?;
            return small(v).ok_or_else(err);
        }
        let upper = t.to_ascii_uppercase().replace('_', "-");
        if let Some((v, _)) = NAMES.iter().find(|(_, name)| *name == upper) {
            return Ok(Dscp(*v));
        }
        let squashed = upper.replace('-', "");
        if let Some((_, v)) = ALIASES.iter().find(|(name, _)| *name == squashed) {
            return Ok(Dscp(*v));
        }
        Err(err())
    }
}

fn small(v: u32) -> Option<Dscp> {
    u8::try_from(v).ok().and_then(|v| Dscp::new(v).ok())
}

impl Serialize for Dscp {
    /// Serialized as the plain number (e.g. `24`).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.0)
    }
}

impl<'de> Deserialize<'de> for Dscp {
    /// Accepts a number (`24`) or anything [`FromStr`] accepts (`"cs3"`,
    /// `"EF"`, `"0x18"`, `"24"`).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DscpVisitor)
    }
}

struct DscpVisitor;

impl Visitor<'_> for DscpVisitor {
    type Value = Dscp;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a DSCP number 0..=63 or a codepoint name such as \"cs3\" or \"ef\"")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dscp, E> {
        u8::try_from(v)
            .ok()
            .and_then(|v| Dscp::new(v).ok())
            .ok_or_else(|| E::invalid_value(Unexpected::Unsigned(v), &self))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dscp, E> {
        u64::try_from(v)
            .map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
            .and_then(|v| self.visit_u64(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Dscp, E> {
        v.parse().map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::value::Error as DeError;
    use serde::de::IntoDeserializer;

    #[test]
    fn new_and_range() {
        assert_eq!(Dscp::new(0), Ok(Dscp::DEFAULT));
        assert_eq!(Dscp::new(63).map(Dscp::value), Ok(63));
        assert_eq!(Dscp::new(64), Err(InvalidDscp(64)));
        assert!(InvalidDscp(64).to_string().contains("64"));
        assert_eq!(Dscp::try_from(46u8), Ok(Dscp::EF));
        assert_eq!(u8::from(Dscp::AF41), 34);
    }

    #[test]
    fn tos_roundtrip() {
        assert_eq!(Dscp::CS3.tos(), 0x60);
        assert_eq!(Dscp::EF.tos(), 0xb8);
        assert_eq!(Dscp::AF41.tos(), 0x88);
        for v in 0..=63u8 {
            let d = Dscp::new(v).unwrap();
            assert_eq!(Dscp::from_tos(d.tos()), d);
            // ECN bits are ignored.
            assert_eq!(Dscp::from_tos(d.tos() | 0b11), d);
            assert_eq!(Dscp::from_tos(d.tos() | 0b01), d);
        }
    }

    #[test]
    fn constants() {
        let expected = [
            (Dscp::CS0, 0),
            (Dscp::CS1, 8),
            (Dscp::AF11, 10),
            (Dscp::AF12, 12),
            (Dscp::AF13, 14),
            (Dscp::CS2, 16),
            (Dscp::AF21, 18),
            (Dscp::AF22, 20),
            (Dscp::AF23, 22),
            (Dscp::CS3, 24),
            (Dscp::AF31, 26),
            (Dscp::AF32, 28),
            (Dscp::AF33, 30),
            (Dscp::CS4, 32),
            (Dscp::AF41, 34),
            (Dscp::AF42, 36),
            (Dscp::AF43, 38),
            (Dscp::CS5, 40),
            (Dscp::VOICE_ADMIT, 44),
            (Dscp::EF, 46),
            (Dscp::CS6, 48),
            (Dscp::CS7, 56),
        ];
        for (d, v) in expected {
            assert_eq!(d.value(), v);
            // every constant has a name that parses back to it
            let name = d.name().unwrap();
            assert_eq!(name.parse::<Dscp>().unwrap(), d);
            assert_eq!(name.to_lowercase().parse::<Dscp>().unwrap(), d);
        }
    }

    #[test]
    fn display() {
        assert_eq!(Dscp::CS3.to_string(), "CS3");
        assert_eq!(Dscp::EF.to_string(), "EF");
        assert_eq!(Dscp::AF41.to_string(), "AF41");
        assert_eq!(Dscp::DEFAULT.to_string(), "CS0");
        assert_eq!(Dscp::VOICE_ADMIT.to_string(), "VOICE-ADMIT");
        assert_eq!(Dscp::new(5).unwrap().to_string(), "5");
        assert_eq!(Dscp::new(63).unwrap().to_string(), "63");
        assert_eq!(format!("{:>5}", Dscp::EF), "   EF");
        assert_eq!(format!("{:>3}", Dscp::new(7).unwrap()), "  7");
        assert_eq!(Dscp::new(7).unwrap().name(), None);
    }

    #[test]
    fn parse() {
        let ok = [
            ("24", 24),
            ("0", 0),
            ("63", 63),
            (" 46 ", 46),
            ("cs3", 24),
            ("CS3", 24),
            ("Ef", 46),
            ("af41", 34),
            ("AF43", 38),
            ("default", 0),
            ("BE", 0),
            ("df", 0),
            ("cs0", 0),
            ("le", 1),
            ("0x18", 24),
            ("0X2E", 46),
            ("0x3f", 63),
            ("voice-admit", 44),
            ("VOICE_ADMIT", 44),
            ("va", 44),
        ];
        for (s, v) in ok {
            assert_eq!(s.parse::<Dscp>().map(Dscp::value), Ok(v), "{s}");
        }
        for bad in [
            "64",
            "256",
            "99999999999",
            "0x40",
            "0x",
            "-1",
            "+5",
            "cs8",
            "af44",
            "",
            "ef!",
        ] {
            let e = bad.parse::<Dscp>().unwrap_err();
            assert_eq!(e.input(), bad);
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn serde_deserialize_number_or_name() {
        let from_u = |v: u64| Dscp::deserialize(IntoDeserializer::<DeError>::into_deserializer(v));
        let from_i = |v: i64| Dscp::deserialize(IntoDeserializer::<DeError>::into_deserializer(v));
        let from_s = |v: &str| Dscp::deserialize(IntoDeserializer::<DeError>::into_deserializer(v));
        assert_eq!(from_u(24).unwrap(), Dscp::CS3);
        assert_eq!(from_i(46).unwrap(), Dscp::EF);
        assert_eq!(from_s("cs3").unwrap(), Dscp::CS3);
        assert_eq!(from_s("AF41").unwrap(), Dscp::AF41);
        assert_eq!(from_s("24").unwrap(), Dscp::CS3);
        assert!(from_u(64).is_err());
        assert!(from_i(-1).is_err());
        let e = from_s("bogus").unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    /// Minimal serializer that only accepts a u8, enough to check that a
    /// Dscp serializes as its number.
    #[test]
    fn serde_serialize_as_number() {
        use serde::ser::Impossible;
        struct U8Only;
        type E = DeErrorSer;
        #[derive(Debug)]
        struct DeErrorSer;
        impl fmt::Display for DeErrorSer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("unsupported")
            }
        }
        impl std::error::Error for DeErrorSer {}
        impl serde::ser::Error for DeErrorSer {
            fn custom<T: fmt::Display>(_: T) -> Self {
                DeErrorSer
            }
        }
        macro_rules! unsupported {
            ($($name:ident($($t:ty),*);)*) => {
                $(fn $name(self, $(_: $t),*) -> Result<u8, E> { Err(DeErrorSer) })*
            };
        }
        impl Serializer for U8Only {
            type Ok = u8;
            type Error = E;
            type SerializeSeq = Impossible<u8, E>;
            type SerializeTuple = Impossible<u8, E>;
            type SerializeTupleStruct = Impossible<u8, E>;
            type SerializeTupleVariant = Impossible<u8, E>;
            type SerializeMap = Impossible<u8, E>;
            type SerializeStruct = Impossible<u8, E>;
            type SerializeStructVariant = Impossible<u8, E>;
            fn serialize_u8(self, v: u8) -> Result<u8, E> {
                Ok(v)
            }
            unsupported! {
                serialize_bool(bool); serialize_i8(i8); serialize_i16(i16);
                serialize_i32(i32); serialize_i64(i64); serialize_u16(u16);
                serialize_u32(u32); serialize_u64(u64); serialize_f32(f32);
                serialize_f64(f64); serialize_char(char); serialize_str(&str);
                serialize_bytes(&[u8]); serialize_none(); serialize_unit();
                serialize_unit_struct(&'static str);
                serialize_unit_variant(&'static str, u32, &'static str);
            }
            fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<u8, E> {
                Err(DeErrorSer)
            }
            fn serialize_newtype_struct<T: ?Sized + Serialize>(
                self,
                _: &'static str,
                _: &T,
            ) -> Result<u8, E> {
                Err(DeErrorSer)
            }
            fn serialize_newtype_variant<T: ?Sized + Serialize>(
                self,
                _: &'static str,
                _: u32,
                _: &'static str,
                _: &T,
            ) -> Result<u8, E> {
                Err(DeErrorSer)
            }
            fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, E> {
                Err(DeErrorSer)
            }
            fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, E> {
                Err(DeErrorSer)
            }
            fn serialize_tuple_struct(
                self,
                _: &'static str,
                _: usize,
            ) -> Result<Self::SerializeTupleStruct, E> {
                Err(DeErrorSer)
            }
            fn serialize_tuple_variant(
                self,
                _: &'static str,
                _: u32,
                _: &'static str,
                _: usize,
            ) -> Result<Self::SerializeTupleVariant, E> {
                Err(DeErrorSer)
            }
            fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, E> {
                Err(DeErrorSer)
            }
            fn serialize_struct(
                self,
                _: &'static str,
                _: usize,
            ) -> Result<Self::SerializeStruct, E> {
                Err(DeErrorSer)
            }
            fn serialize_struct_variant(
                self,
                _: &'static str,
                _: u32,
                _: &'static str,
                _: usize,
            ) -> Result<Self::SerializeStructVariant, E> {
                Err(DeErrorSer)
            }
        }
        assert_eq!(Dscp::CS3.serialize(U8Only).unwrap(), 24);
        assert_eq!(Dscp::EF.serialize(U8Only).unwrap(), 46);
    }
}
