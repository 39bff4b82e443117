//! JSON Schema constraints that garde has no built-in rule for, as functions for
//! `#[garde(custom(..))]`: the string formats `date-time` and `uuid`, `multipleOf`, exclusive
//! bounds and number `enum`s.
//! Message types generated from an AsyncAPI document (`asena-codegen`) use them; so can any
//! hand-written typed message.
//!
//! Each rule takes the field as declared, so one function serves `T` and `Option<T>` (an
//! absent optional value passes):
//!
//! ```
//! use asena_protocol::Checked;
//! use asena_protocol::rules::{date_time, multiple_of};
//!
//! #[derive(garde::Validate)]
//! struct Tick {
//!     #[garde(custom(date_time))]
//!     at: String,
//!     #[garde(custom(multiple_of(0.01)))]
//!     price: Option<f64>,
//! }
//!
//! assert!(Tick { at: "2026-12-07T10:00:00Z".into(), price: Some(54350.4) }.check().is_ok());
//! let late = Tick { at: "yesterday".into(), price: None }.check().unwrap_err();
//! assert_eq!(late.path(), "at");
//! ```

/// A field a string rule applies to: a string, or an optional one (`None` passes).
pub trait StrField {
    /// The string, if there is one.
    fn str_field(&self) -> Option<&str>;
}

impl StrField for String {
    fn str_field(&self) -> Option<&str> {
        Some(self)
    }
}

impl StrField for str {
    fn str_field(&self) -> Option<&str> {
        Some(self)
    }
}

impl<T: StrField> StrField for Option<T> {
    fn str_field(&self) -> Option<&str> {
        self.as_ref().and_then(StrField::str_field)
    }
}

/// A field a number rule applies to: a number, or an optional one (`None` passes).
pub trait NumberField {
    /// The number, if there is one.
    fn number_field(&self) -> Option<f64>;
}

macro_rules! number_fields {
    ($($t:ty),*) => {$(
        impl NumberField for $t {
            #[allow(clippy::cast_precision_loss, clippy::cast_lossless)]
            fn number_field(&self) -> Option<f64> {
                Some(*self as f64)
            }
        }
    )*};
}
number_fields!(f64, f32, i64, u64, i32, u32);

impl<T: NumberField> NumberField for Option<T> {
    fn number_field(&self) -> Option<f64> {
        self.as_ref().and_then(NumberField::number_field)
    }
}

/// `format: date-time`: an RFC 3339 timestamp such as `2026-12-07T10:00:00.5+01:00`.
pub fn date_time<T: StrField + ?Sized>(value: &T, _: &()) -> garde::Result {
    let Some(text) = value.str_field() else {
        return Ok(());
    };
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|_| ())
        .map_err(|_| garde::Error::new("not an RFC 3339 date-time"))
}

/// `format: uuid`: a UUID in its hyphenated form.
pub fn uuid<T: StrField + ?Sized>(value: &T, _: &()) -> garde::Result {
    let Some(text) = value.str_field() else {
        return Ok(());
    };
    match uuid::Uuid::try_parse(text) {
        Ok(_) if text.len() == 36 => Ok(()),
        _ => Err(garde::Error::new("not a hyphenated UUID")),
    }
}

/// `multipleOf: factor`: the value divided by `factor` is a whole number (within a
/// relative 1e-9, so that `54350.4` is a multiple of `0.01` in binary floating point).
pub fn multiple_of<T: NumberField + ?Sized>(factor: f64) -> impl Fn(&T, &()) -> garde::Result {
    move |value: &T, _: &()| {
        let Some(number) = value.number_field() else {
            return Ok(());
        };
        let quotient = number / factor;
        if (quotient - quotient.round()).abs() <= 1e-9 * quotient.abs().max(1.0) {
            Ok(())
        } else {
            Err(garde::Error::new(format!("not a multiple of {factor}")))
        }
    }
}

/// A number `enum` (or `const`): the value is one of `values`.
pub fn one_of<T: NumberField + ?Sized>(
    values: &'static [f64],
) -> impl Fn(&T, &()) -> garde::Result {
    move |value: &T, _: &()| match value.number_field() {
        Some(number) if !values.contains(&number) => {
            Err(garde::Error::new(format!("not one of {values:?}")))
        }
        _ => Ok(()),
    }
}

/// `exclusiveMinimum: bound` on a number: the value is greater than `bound`.
pub fn greater_than<T: NumberField + ?Sized>(bound: f64) -> impl Fn(&T, &()) -> garde::Result {
    move |value: &T, _: &()| match value.number_field() {
        Some(number) if number <= bound => {
            Err(garde::Error::new(format!("not greater than {bound}")))
        }
        _ => Ok(()),
    }
}

/// `exclusiveMaximum: bound` on a number: the value is less than `bound`.
pub fn less_than<T: NumberField + ?Sized>(bound: f64) -> impl Fn(&T, &()) -> garde::Result {
    move |value: &T, _: &()| match value.number_field() {
        Some(number) if number >= bound => Err(garde::Error::new(format!("not less than {bound}"))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_times_follow_rfc_3339() {
        for ok in ["2026-12-07T10:00:00Z", "2026-12-07T10:00:00.123+05:30"] {
            assert!(date_time(ok, &()).is_ok(), "{ok}");
        }
        for bad in ["2026-12-07", "10:00:00Z", "2026-13-07T10:00:00Z", ""] {
            assert!(date_time(bad, &()).is_err(), "{bad}");
        }
        assert!(date_time(&None::<String>, &()).is_ok());
    }

    #[test]
    fn uuids_are_hyphenated() {
        assert!(uuid("67e55044-10b1-426f-9247-bb680e5fe0c8", &()).is_ok());
        assert!(uuid("67e5504410b1426f9247bb680e5fe0c8", &()).is_err());
        assert!(uuid("nope", &()).is_err());
    }

    #[test]
    fn multiples_tolerate_binary_fractions() {
        let cents = multiple_of::<f64>(0.01);
        assert!(cents(&54350.4, &()).is_ok());
        assert!(cents(&0.002, &()).is_err());
        let even = multiple_of::<Option<i64>>(2.0);
        assert!(even(&Some(10), &()).is_ok());
        assert!(even(&Some(7), &()).is_err());
        assert!(even(&None, &()).is_ok());
    }
}
