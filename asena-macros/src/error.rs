//! Reporting several errors at once: checks that can fail independently all run, and their
//! `syn::Error`s are combined into one result.

/// Runs two checks and reports the errors of both.
pub(crate) fn both<A, B>(a: syn::Result<A>, b: syn::Result<B>) -> syn::Result<(A, B)> {
    match (a, b) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
        (Err(mut e1), Err(e2)) => {
            e1.combine(e2);
            Err(e1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proc_macro2::Span;

    fn fail(msg: &str) -> syn::Result<()> {
        Err(syn::Error::new(Span::call_site(), msg))
    }

    fn messages(result: syn::Result<((), ())>) -> Vec<String> {
        match result {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn both_reports_the_errors_of_both_checks_in_order() {
        assert_eq!(
            messages(both(fail("first"), fail("second"))),
            ["first", "second"]
        );
        assert_eq!(messages(both(Ok(()), fail("second"))), ["second"]);
        assert_eq!(messages(both(fail("first"), Ok(()))), ["first"]);
        assert!(both(Ok(1), Ok("a")).is_ok_and(|pair| pair == (1, "a")));
    }
}
