//! Arbitrary-precision cty numbers.

use std::fmt;
use std::str::FromStr;

use bigdecimal::num_bigint::BigInt;
use bigdecimal::{BigDecimal, ToPrimitive, Zero};

/// A cty number: an arbitrary-precision decimal. Conversions never truncate silently:
/// `to_i64`/`to_f64_exact` return `None` when the value is not exactly representable.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Number(BigDecimal);

/// A string that is not a decimal number.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a number: {0:?}")]
pub struct NumberParseError(pub String);

impl Number {
    pub fn from_bigdecimal(d: BigDecimal) -> Number {
        Number(d.normalized())
    }
    pub fn as_bigdecimal(&self) -> &BigDecimal {
        &self.0
    }
    pub fn into_bigdecimal(self) -> BigDecimal {
        self.0
    }
    /// Exact conversion from a finite f64 (`None` for NaN/infinity).
    pub fn from_f64(f: f64) -> Option<Number> {
        f64_exact(f).map(Number::from_bigdecimal)
    }
    pub fn is_integer(&self) -> bool {
        self.0.is_integer()
    }
    /// The value as i64 when it is an integer in range.
    pub fn to_i64(&self) -> Option<i64> {
        if !self.0.is_integer() {
            return None;
        }
        let i = self.0.to_i64()?;
        (self.0 == i).then_some(i)
    }
    /// The value as u64 when it is a non-negative integer in range.
    pub fn to_u64(&self) -> Option<u64> {
        if !self.0.is_integer() {
            return None;
        }
        let i = self.0.to_u64()?;
        (self.0 == i).then_some(i)
    }
    /// The value as f64 only when the conversion is exact.
    pub fn to_f64_exact(&self) -> Option<f64> {
        let f = self.0.to_f64()?;
        let back = f64_exact(f)?;
        (back == self.0).then_some(f)
    }
    /// Nearest f64 (lossy).
    pub fn to_f64_lossy(&self) -> f64 {
        self.0.to_f64().unwrap_or(f64::NAN)
    }
    /// Plain decimal text without exponent (as cty's `Text('f', -1)`).
    pub fn to_plain_string(&self) -> String {
        if self.0.is_zero() {
            return "0".to_string();
        }
        self.0.to_plain_string()
    }
}

/// Exact decimal expansion of a finite f64.
fn f64_exact(f: f64) -> Option<BigDecimal> {
    if !f.is_finite() {
        return None;
    }
    let bits = f.to_bits();
    let negative = bits >> 63 == 1;
    let exp = ((bits >> 52) & 0x7ff) as i64;
    let frac = bits & ((1u64 << 52) - 1);
    let (mantissa, e) = if exp == 0 {
        (frac, -1074i64)
    } else {
        (frac | (1u64 << 52), exp - 1075)
    };
    let mut m = BigInt::from(mantissa);
    if negative {
        m = -m;
    }
    let d = if e >= 0 {
        BigDecimal::new(m << (e as usize), 0)
    } else {
        let k = (-e) as u32;
        BigDecimal::new(m * BigInt::from(5u8).pow(k), k as i64)
    };
    Some(d.normalized())
}

impl FromStr for Number {
    type Err = NumberParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        // Reject things BigDecimal might accept but cty does not (e.g. empty, "inf").
        if t.is_empty() || !t.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) {
            return Err(NumberParseError(s.to_string()));
        }
        BigDecimal::from_str(t)
            .map(Number::from_bigdecimal)
            .map_err(|_| NumberParseError(s.to_string()))
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_plain_string())
    }
}

impl fmt::Debug for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Number({})", self.to_plain_string())
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Number {
            fn from(v: $t) -> Number { Number(BigDecimal::from(v)) }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32, u64, i128, u128);

impl From<BigInt> for Number {
    fn from(v: BigInt) -> Number {
        Number(BigDecimal::new(v, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_conversions() {
        let two70: Number = "1180591620717411303424".parse().unwrap();
        assert_eq!(two70.to_i64(), None);
        assert_eq!(two70.to_u64(), None);
        assert_eq!(two70.to_f64_exact(), Some(2f64.powi(70)));
        let tenth: Number = "0.1".parse().unwrap();
        assert_eq!(tenth.to_f64_exact(), None, "0.1 is not exactly an f64");
        assert_eq!(tenth.to_string(), "0.1");
        let half = Number::from_f64(0.5).unwrap();
        assert_eq!(half.to_f64_exact(), Some(0.5));
        assert_eq!(half.to_string(), "0.5");
        let f = Number::from_f64(0.1).unwrap();
        assert_ne!(f, tenth);
        assert_eq!(f.to_f64_exact(), Some(0.1));
        assert_eq!(Number::from(-42i64).to_i64(), Some(-42));
        assert_eq!(Number::from(u64::MAX).to_u64(), Some(u64::MAX));
        assert_eq!(Number::from(u64::MAX).to_i64(), None);
        assert_eq!("1e3".parse::<Number>().unwrap().to_i64(), Some(1000));
        assert_eq!("100".parse::<Number>().unwrap().to_string(), "100");
        assert_eq!("0.000".parse::<Number>().unwrap().to_string(), "0");
        assert!("inf".parse::<Number>().is_err());
        assert!("".parse::<Number>().is_err());
        assert!(Number::from_f64(f64::NAN).is_none());
    }
}
