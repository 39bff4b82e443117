use asena_runtime::prelude::*;

#[service]
struct Mailer;

#[service]
struct Notifier {
    #[inject]
    mailer: Ulak<Mailer>,
}

fn main() {}
