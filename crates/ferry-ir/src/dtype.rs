//! Element types. The numbering follows ONNX's `TensorProto.DataType` because it is the richest
//! exchange format we carry, but nothing here depends on ONNX.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    F32,
    U8,
    I8,
    U16,
    I16,
    I32,
    I64,
    String,
    Bool,
    F16,
    F64,
    U32,
    U64,
    C64,
    C128,
    BF16,
    F8E4M3FN,
    F8E4M3FNUZ,
    F8E5M2,
    F8E5M2FNUZ,
    U4,
    I4,
    F4E2M1,
    F8E8M0,
    U2,
    I2,
    F6E2M3,
    F6E3M2,
}

pub const ALL_DTYPES: [DType; 28] = [
    DType::F32,
    DType::U8,
    DType::I8,
    DType::U16,
    DType::I16,
    DType::I32,
    DType::I64,
    DType::String,
    DType::Bool,
    DType::F16,
    DType::F64,
    DType::U32,
    DType::U64,
    DType::C64,
    DType::C128,
    DType::BF16,
    DType::F8E4M3FN,
    DType::F8E4M3FNUZ,
    DType::F8E5M2,
    DType::F8E5M2FNUZ,
    DType::U4,
    DType::I4,
    DType::F4E2M1,
    DType::F8E8M0,
    DType::U2,
    DType::I2,
    DType::F6E2M3,
    DType::F6E3M2,
];

impl DType {
    /// The ONNX `TensorProto.DataType` code.
    pub fn onnx_code(self) -> i32 {
        ALL_DTYPES.iter().position(|d| *d == self).unwrap() as i32 + 1
    }

    pub fn from_onnx_code(code: i32) -> Option<DType> {
        if code < 1 {
            return None;
        }
        ALL_DTYPES.get(code as usize - 1).copied()
    }

    /// Storage size in bits of one element; `None` for strings (variable length).
    pub fn bits(self) -> Option<u32> {
        use DType::*;
        Some(match self {
            U2 | I2 => 2,
            U4 | I4 | F4E2M1 => 4,
            F6E2M3 | F6E3M2 => 6,
            U8 | I8 | Bool | F8E4M3FN | F8E4M3FNUZ | F8E5M2 | F8E5M2FNUZ | F8E8M0 => 8,
            U16 | I16 | F16 | BF16 => 16,
            F32 | I32 | U32 => 32,
            F64 | I64 | U64 | C64 => 64,
            C128 => 128,
            String => return None,
        })
    }

    /// Bytes needed to store `count` elements, packed (sub-byte types share bytes, low bits first,
    /// as ONNX `raw_data` stores them). `None` for strings or on overflow.
    pub fn storage_bytes(self, count: u64) -> Option<u64> {
        let bits = self.bits()? as u64;
        count.checked_mul(bits).map(|b| b.div_ceil(8))
    }

    pub fn is_float(self) -> bool {
        use DType::*;
        matches!(
            self,
            F32 | F64 | F16 | BF16 | F8E4M3FN | F8E4M3FNUZ | F8E5M2 | F8E5M2FNUZ | F8E8M0 | F4E2M1 | F6E2M3 | F6E3M2
        )
    }

    pub fn is_signed_int(self) -> bool {
        matches!(self, DType::I2 | DType::I4 | DType::I8 | DType::I16 | DType::I32 | DType::I64)
    }

    pub fn is_unsigned_int(self) -> bool {
        matches!(self, DType::U2 | DType::U4 | DType::U8 | DType::U16 | DType::U32 | DType::U64)
    }

    pub fn is_int(self) -> bool {
        self.is_signed_int() || self.is_unsigned_int()
    }

    pub fn is_complex(self) -> bool {
        matches!(self, DType::C64 | DType::C128)
    }

    pub fn name(self) -> &'static str {
        use DType::*;
        match self {
            F32 => "f32",
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            I32 => "i32",
            I64 => "i64",
            String => "string",
            Bool => "bool",
            F16 => "f16",
            F64 => "f64",
            U32 => "u32",
            U64 => "u64",
            C64 => "complex64",
            C128 => "complex128",
            BF16 => "bf16",
            F8E4M3FN => "f8e4m3fn",
            F8E4M3FNUZ => "f8e4m3fnuz",
            F8E5M2 => "f8e5m2",
            F8E5M2FNUZ => "f8e5m2fnuz",
            U4 => "u4",
            I4 => "i4",
            F4E2M1 => "f4e2m1",
            F8E8M0 => "f8e8m0",
            U2 => "u2",
            I2 => "i2",
            F6E2M3 => "f6e2m3",
            F6E3M2 => "f6e3m2",
        }
    }

    pub fn from_name(name: &str) -> Option<DType> {
        ALL_DTYPES.iter().copied().find(|d| d.name() == name)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onnx_codes_round_trip() {
        for d in ALL_DTYPES {
            assert_eq!(DType::from_onnx_code(d.onnx_code()), Some(d));
        }
        assert_eq!(DType::F32.onnx_code(), 1);
        assert_eq!(DType::BF16.onnx_code(), 16);
        assert_eq!(DType::I2.onnx_code(), 26);
        assert_eq!(DType::from_onnx_code(0), None);
        assert_eq!(DType::from_onnx_code(29), None);
    }

    #[test]
    fn packed_storage() {
        assert_eq!(DType::I4.storage_bytes(3), Some(2));
        assert_eq!(DType::U2.storage_bytes(5), Some(2));
        assert_eq!(DType::F32.storage_bytes(u64::MAX), None);
        assert_eq!(DType::String.storage_bytes(1), None);
    }
}
