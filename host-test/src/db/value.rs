//! Values crossing between the store and either engine, and rows read back.

use std::sync::Arc;

use super::{DbError, DbResult};

/// A statement argument or a column value. Booleans are stored as integers 0/1 (both engines
/// accept them so; PostgreSQL boolean results are read back as integers).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Int(_) => "integer",
            Value::Real(_) => "real",
            Value::Text(_) => "text",
            Value::Blob(_) => "blob",
        }
    }
}

/// Rust values as statement arguments.
pub trait ToValue {
    fn to_value(&self) -> Value;
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}

impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}

impl ToValue for f64 {
    fn to_value(&self) -> Value {
        Value::Real(*self)
    }
}

macro_rules! int_to_value {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                // Saturates: nothing the store keeps comes near i64::MAX.
                Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
            }
        }
    )*};
}
int_to_value!(i32, i64, u32, u64, usize);

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        match self {
            Some(v) => v.to_value(),
            None => Value::Null,
        }
    }
}

/// Column values as Rust values.
pub trait FromValue: Sized {
    fn from_value(v: &Value, column: &str) -> DbResult<Self>;
}

fn mismatch<T>(column: &str, expected: &'static str, v: &Value) -> DbResult<T> {
    Err(DbError::Type { column: column.to_string(), expected, found: v.kind() })
}

impl FromValue for String {
    fn from_value(v: &Value, column: &str) -> DbResult<Self> {
        match v {
            Value::Text(s) => Ok(s.clone()),
            other => mismatch(column, "text", other),
        }
    }
}

impl FromValue for i64 {
    fn from_value(v: &Value, column: &str) -> DbResult<Self> {
        match v {
            Value::Int(i) => Ok(*i),
            other => mismatch(column, "integer", other),
        }
    }
}

macro_rules! int_from_value {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(v: &Value, column: &str) -> DbResult<Self> {
                let i = i64::from_value(v, column)?;
                <$t>::try_from(i).map_err(|_| DbError::Type {
                    column: column.to_string(),
                    expected: stringify!($t),
                    found: "an integer out of range",
                })
            }
        }
    )*};
}
int_from_value!(i32, u32, u64);

impl FromValue for bool {
    fn from_value(v: &Value, column: &str) -> DbResult<Self> {
        Ok(i64::from_value(v, column)? != 0)
    }
}

impl FromValue for f64 {
    fn from_value(v: &Value, column: &str) -> DbResult<Self> {
        match v {
            Value::Real(f) => Ok(*f),
            Value::Int(i) => Ok(*i as f64),
            other => mismatch(column, "real", other),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(v: &Value, column: &str) -> DbResult<Self> {
        match v {
            Value::Blob(b) => Ok(b.clone()),
            Value::Text(s) => Ok(s.as_bytes().to_vec()),
            other => mismatch(column, "blob", other),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value, column: &str) -> DbResult<Self> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v, column).map(Some),
        }
    }
}

/// Where a row's column is: by position or by name.
pub trait ColumnIndex {
    fn position(&self, columns: &[String]) -> Option<usize>;
}

impl ColumnIndex for usize {
    fn position(&self, columns: &[String]) -> Option<usize> {
        (*self < columns.len()).then_some(*self)
    }
}

impl ColumnIndex for &str {
    fn position(&self, columns: &[String]) -> Option<usize> {
        columns.iter().position(|c| c == self)
    }
}

/// One result row.
#[derive(Clone, Debug)]
pub struct Row {
    pub(super) columns: Arc<[String]>,
    pub(super) values: Vec<Value>,
}

impl Row {
    pub fn get<T: FromValue>(&self, at: impl ColumnIndex + std::fmt::Debug) -> DbResult<T> {
        let i = at.position(&self.columns).ok_or_else(|| DbError::Type {
            column: format!("{at:?}"),
            expected: "a column of the result",
            found: "no such column",
        })?;
        T::from_value(&self.values[i], &self.columns[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_convert_both_ways_and_mismatches_name_the_column() {
        let row = Row {
            columns: vec!["n".to_string(), "s".to_string(), "z".to_string()].into(),
            values: vec![Value::Int(3), Value::Text("x".into()), Value::Null],
        };
        assert_eq!(row.get::<u32>(0).unwrap(), 3);
        assert!(row.get::<bool>("n").unwrap());
        assert_eq!(row.get::<String>("s").unwrap(), "x");
        assert_eq!(row.get::<Option<i64>>("z").unwrap(), None);
        let err = row.get::<i64>("s").unwrap_err().to_string();
        assert!(err.contains("column s") && err.contains("integer"), "{err}");
        assert!(row.get::<i64>("missing").is_err());
        assert!(Row { columns: vec!["n".into()].into(), values: vec![Value::Int(-1)] }.get::<u64>(0).is_err());
        assert_eq!(Some(5u32).to_value(), Value::Int(5));
        assert_eq!(None::<&str>.to_value(), Value::Null);
        assert_eq!(true.to_value(), Value::Int(1));
    }
}
