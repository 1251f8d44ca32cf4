//! Shapes whose dimensions may be symbolic: a number, a named parameter (ONNX `dim_param`), an
//! anonymous unknown, or arithmetic over those. Arithmetic folds constants so that fully known
//! shapes stay plain numbers.

use std::fmt;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Known(u64),
    /// A named dimension: every occurrence of the same name is the same size.
    Param(Arc<str>),
    /// A size nobody knows, not even its relation to other sizes.
    Unknown,
    Expr(Arc<DimExpr>),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DimExpr {
    Add(Dim, Dim),
    Sub(Dim, Dim),
    Mul(Dim, Dim),
    FloorDiv(Dim, Dim),
    CeilDiv(Dim, Dim),
    Max(Dim, Dim),
    Min(Dim, Dim),
}

impl Dim {
    pub fn param(name: &str) -> Dim {
        Dim::Param(Arc::from(name))
    }

    pub fn known(&self) -> Option<u64> {
        match self {
            Dim::Known(n) => Some(*n),
            _ => None,
        }
    }

    pub fn is_known(&self) -> bool {
        matches!(self, Dim::Known(_))
    }

    fn combine(self, other: Dim, make: fn(Dim, Dim) -> DimExpr) -> Dim {
        if matches!(self, Dim::Unknown) || matches!(other, Dim::Unknown) {
            return Dim::Unknown;
        }
        Dim::Expr(Arc::new(make(self, other)))
    }

    pub fn add(&self, other: &Dim) -> Dim {
        match (self, other) {
            (Dim::Known(a), Dim::Known(b)) => a.checked_add(*b).map_or(Dim::Unknown, Dim::Known),
            (Dim::Known(0), x) | (x, Dim::Known(0)) => x.clone(),
            _ => self.clone().combine(other.clone(), DimExpr::Add),
        }
    }

    /// `self - other`; a known negative result means the shapes disagree and becomes unknown.
    pub fn sub(&self, other: &Dim) -> Dim {
        match (self, other) {
            (Dim::Known(a), Dim::Known(b)) => a.checked_sub(*b).map_or(Dim::Unknown, Dim::Known),
            (x, Dim::Known(0)) => x.clone(),
            (a, b) if a == b && !matches!(a, Dim::Unknown) => Dim::Known(0),
            _ => self.clone().combine(other.clone(), DimExpr::Sub),
        }
    }

    pub fn mul(&self, other: &Dim) -> Dim {
        match (self, other) {
            (Dim::Known(a), Dim::Known(b)) => a.checked_mul(*b).map_or(Dim::Unknown, Dim::Known),
            (Dim::Known(0), _) | (_, Dim::Known(0)) => Dim::Known(0),
            (Dim::Known(1), x) | (x, Dim::Known(1)) => x.clone(),
            _ => self.clone().combine(other.clone(), DimExpr::Mul),
        }
    }

    pub fn floor_div(&self, other: &Dim) -> Dim {
        match (self, other) {
            (_, Dim::Known(0)) => Dim::Unknown,
            (Dim::Known(a), Dim::Known(b)) => Dim::Known(a / b),
            (x, Dim::Known(1)) => x.clone(),
            _ => self.clone().combine(other.clone(), DimExpr::FloorDiv),
        }
    }

    pub fn ceil_div(&self, other: &Dim) -> Dim {
        match (self, other) {
            (_, Dim::Known(0)) => Dim::Unknown,
            (Dim::Known(a), Dim::Known(b)) => Dim::Known(a.div_ceil(*b)),
            (x, Dim::Known(1)) => x.clone(),
            _ => self.clone().combine(other.clone(), DimExpr::CeilDiv),
        }
    }

    pub fn max(&self, other: &Dim) -> Dim {
        match (self, other) {
            (Dim::Known(a), Dim::Known(b)) => Dim::Known(*a.max(b)),
            (a, b) if a == b => a.clone(),
            _ => self.clone().combine(other.clone(), DimExpr::Max),
        }
    }

    pub fn min(&self, other: &Dim) -> Dim {
        match (self, other) {
            (Dim::Known(a), Dim::Known(b)) => Dim::Known(*a.min(b)),
            (a, b) if a == b => a.clone(),
            _ => self.clone().combine(other.clone(), DimExpr::Min),
        }
    }

    /// Evaluates the dimension once every named parameter has a value.
    pub fn eval(&self, bind: &dyn Fn(&str) -> Option<u64>) -> Option<u64> {
        match self {
            Dim::Known(n) => Some(*n),
            Dim::Param(p) => bind(p),
            Dim::Unknown => None,
            Dim::Expr(e) => {
                let (a, b) = e.operands();
                let (a, b) = (a.eval(bind)?, b.eval(bind)?);
                match **e {
                    DimExpr::Add(..) => a.checked_add(b),
                    DimExpr::Sub(..) => a.checked_sub(b),
                    DimExpr::Mul(..) => a.checked_mul(b),
                    DimExpr::FloorDiv(..) => a.checked_div(b),
                    DimExpr::CeilDiv(..) => (b != 0).then(|| a.div_ceil(b)),
                    DimExpr::Max(..) => Some(a.max(b)),
                    DimExpr::Min(..) => Some(a.min(b)),
                }
            }
        }
    }
}

impl DimExpr {
    fn operands(&self) -> (&Dim, &Dim) {
        match self {
            DimExpr::Add(a, b)
            | DimExpr::Sub(a, b)
            | DimExpr::Mul(a, b)
            | DimExpr::FloorDiv(a, b)
            | DimExpr::CeilDiv(a, b)
            | DimExpr::Max(a, b)
            | DimExpr::Min(a, b) => (a, b),
        }
    }
}

impl From<u64> for Dim {
    fn from(n: u64) -> Dim {
        Dim::Known(n)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Param(p) => write!(f, "{p}"),
            Dim::Unknown => write!(f, "?"),
            Dim::Expr(e) => {
                let (a, b) = e.operands();
                match **e {
                    DimExpr::Add(..) => write!(f, "({a}+{b})"),
                    DimExpr::Sub(..) => write!(f, "({a}-{b})"),
                    DimExpr::Mul(..) => write!(f, "{a}*{b}"),
                    DimExpr::FloorDiv(..) => write!(f, "({a}//{b})"),
                    DimExpr::CeilDiv(..) => write!(f, "ceil({a}/{b})"),
                    DimExpr::Max(..) => write!(f, "max({a},{b})"),
                    DimExpr::Min(..) => write!(f, "min({a},{b})"),
                }
            }
        }
    }
}

/// A shape of known rank; a value whose rank is unknown has no `Shape` at all.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    pub fn known(dims: &[u64]) -> Shape {
        Shape(dims.iter().map(|d| Dim::Known(*d)).collect())
    }

    pub fn scalar() -> Shape {
        Shape(Vec::new())
    }

    pub fn rank(&self) -> usize {
        self.0.len()
    }

    pub fn dims(&self) -> &[Dim] {
        &self.0
    }

    /// All dimensions as numbers, if every one is known.
    pub fn to_known(&self) -> Option<Vec<u64>> {
        self.0.iter().map(Dim::known).collect()
    }

    /// Number of elements, symbolic when a dimension is.
    pub fn numel(&self) -> Dim {
        self.0.iter().fold(Dim::Known(1), |acc, d| acc.mul(d))
    }

    /// numpy broadcasting of two shapes. Errors only when two known sizes disagree.
    pub fn broadcast(&self, other: &Shape) -> Result<Shape, String> {
        let rank = self.rank().max(other.rank());
        let pad = |s: &Shape, i: usize| -> Dim {
            let off = rank - s.rank();
            if i < off { Dim::Known(1) } else { s.0[i - off].clone() }
        };
        let mut out = Vec::with_capacity(rank);
        for i in 0..rank {
            let (a, b) = (pad(self, i), pad(other, i));
            out.push(match (&a, &b) {
                (Dim::Known(1), _) => b,
                (_, Dim::Known(1)) => a,
                (Dim::Known(x), Dim::Known(y)) if x != y => {
                    return Err(format!("cannot broadcast {self} with {other}: {x} vs {y} at axis {i}"));
                }
                _ if a == b => a,
                (Dim::Known(_), _) => a,
                (_, Dim::Known(_)) => b,
                _ => a.max(&b),
            });
        }
        Ok(Shape(out))
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// Resolves a possibly negative axis against a rank (numpy convention).
pub fn normalize_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(a as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_folds_constants() {
        let n = Dim::param("N");
        assert_eq!(Dim::Known(3).mul(&Dim::Known(4)), Dim::Known(12));
        assert_eq!(n.mul(&Dim::Known(1)), n);
        assert_eq!(n.sub(&n), Dim::Known(0));
        let e = n.mul(&Dim::Known(2)).add(&Dim::Known(1));
        assert_eq!(e.to_string(), "(N*2+1)");
        assert_eq!(e.eval(&|p| (p == "N").then_some(5)), Some(11));
        assert_eq!(Dim::Known(u64::MAX).mul(&Dim::Known(2)), Dim::Unknown);
    }

    #[test]
    fn broadcasting() {
        let a = Shape(vec![Dim::param("B"), Dim::Known(1), Dim::Known(4)]);
        let b = Shape::known(&[3, 1]);
        assert_eq!(a.broadcast(&b).unwrap().to_string(), "[B,3,4]");
        assert!(Shape::known(&[2]).broadcast(&Shape::known(&[3])).is_err());
    }

    #[test]
    fn axes() {
        assert_eq!(normalize_axis(-1, 3), Ok(2));
        assert!(normalize_axis(3, 3).is_err());
        assert!(normalize_axis(-4, 3).is_err());
    }
}
