//! [`Middlewares`]: the middlewares that guard a router given to
//! [`AsenaBuilder::guarded_router`](crate::AsenaBuilder::guarded_router), named by their
//! component types; the chain they make runs in `middleware` (`routes.rs`).

use crate::di::{Component, ComponentRecord};
use crate::middleware::Middleware;

/// The middlewares that guard a router, in the order they run: one middleware type, or a
/// tuple of up to four (`(Auth, RateLimit)`).
pub trait Middlewares {
    /// The registration records of the middlewares, in order.
    #[doc(hidden)]
    fn records() -> Vec<&'static ComponentRecord>;
}

impl<M: Component + Middleware> Middlewares for M {
    fn records() -> Vec<&'static ComponentRecord> {
        vec![M::record()]
    }
}

macro_rules! middlewares_tuple {
    ($($m:ident),+) => {
        impl<$($m: Component + Middleware),+> Middlewares for ($($m,)+) {
            fn records() -> Vec<&'static ComponentRecord> {
                vec![$($m::record()),+]
            }
        }
    };
}

middlewares_tuple!(A);
middlewares_tuple!(A, B);
middlewares_tuple!(A, B, C);
middlewares_tuple!(A, B, C, D);
