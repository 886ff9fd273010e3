// Only the handshake can say the server authenticated.
use oncewire::session::ServerAuthenticated;

fn main() {
    let _proof = ServerAuthenticated::new();
}
