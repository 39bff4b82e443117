use asena_runtime::prelude::*;

#[service(name = "Users", name = "Accounts")]
struct UserService;

#[service]
struct Greeter {
    #[inject]
    users: Arc<UserService>,
}

fn main() {}
