//! Where the backend keeps what must outlive a request, as traits: the
//! device registry first (async, so it can live in a database; the fleet
//! crate implements it on PostgreSQL), with an in-memory default here.
//! Sessions, pending handshakes, replay caches and used challenges follow
//! the same pattern in the fleet issue.

use oncewire::device::{Admission, EnrolledDevice, ReEnrollment};
use oncewire::{DeviceId, Error, PublicKey};
use std::collections::HashMap;
use std::future::Future;
use std::sync::RwLock;

/// The enrolled devices: looked up at every handshake, written at enrollment.
pub trait DeviceRegistry: Send + Sync + 'static {
    /// The key enrolled under `device`, if any.
    fn device_key(&self, device: &DeviceId) -> impl Future<Output = Result<Option<PublicKey>, Error>> + Send;

    /// Stores a verified enrollment under the re-enrollment `policy`
    /// (`SPEC.md` §8.3), atomically with the lookup of the key already
    /// enrolled under the same id.
    fn enroll(
        &self,
        device: EnrolledDevice,
        policy: ReEnrollment,
    ) -> impl Future<Output = Result<Admission, Error>> + Send;
}

/// A device registry in memory (a map behind a read-write lock).
#[derive(Debug, Default)]
pub struct MemoryRegistry {
    devices: RwLock<HashMap<DeviceId, PublicKey>>,
}

impl MemoryRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of enrolled devices.
    pub fn len(&self) -> usize {
        self.devices.read().map_or(0, |m| m.len())
    }

    /// True if no device is enrolled.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl DeviceRegistry for MemoryRegistry {
    async fn device_key(&self, device: &DeviceId) -> Result<Option<PublicKey>, Error> {
        Ok(self.devices.read().map_err(|_| Error::Storage)?.get(device).copied())
    }

    async fn enroll(&self, device: EnrolledDevice, policy: ReEnrollment) -> Result<Admission, Error> {
        let mut m = self.devices.write().map_err(|_| Error::Storage)?;
        let admission = device.admit(m.get(&device.device), policy)?;
        if admission != Admission::Unchanged {
            m.insert(device.device, device.public_key);
        }
        Ok(admission)
    }
}
