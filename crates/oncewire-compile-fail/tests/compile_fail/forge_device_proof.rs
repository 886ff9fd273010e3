// Only the signature verifiers can say a device proved its key.
use core::marker::PhantomData;
use oncewire::device::{DeviceId, DeviceVerified};

fn main() {
    let device = DeviceId::new(b"dev").unwrap();
    let _proof = DeviceVerified { device, _private: PhantomData };
}
