//! Patches to several pods of one rollout (rotation, drain marks), sent together but bounded.
//! Together, because on a busy API server each waits its turn, and one after another they held
//! the reconcile (and its slot) that much longer; bounded, because a blue-green flip of a large
//! Deployment would otherwise open a connection per pod at once, times the reconciles running.

use std::future::Future;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;

use super::{Error, caches::Writes};

/// Pod patches one call keeps in flight at once.
pub const POD_PATCHES_AT_ONCE: usize = 16;

/// Sends the patches `POD_PATCHES_AT_ONCE` at a time and waits for every answer. Each pod the
/// API server answered is recorded in `writes`; a pod gone since it was listed (404) is skipped,
/// with nothing left to patch. Returns the keys of the pods patched, in the order given; the
/// first refusal is the error, once every patch was answered (those that went through are
/// recorded all the same).
pub async fn send<K, P>(patches: impl IntoIterator<Item = P>, writes: &Writes) -> Result<Vec<K>, Error>
where
    P: Future<Output = (Result<Pod, kube::Error>, K)>,
{
    let answers: Vec<_> = futures::stream::iter(patches).buffered(POD_PATCHES_AT_ONCE).collect().await;
    let mut patched = Vec::new();
    let mut refused = None;
    for (answer, key) in answers {
        match answer {
            Ok(pod) => {
                writes.record(&pod);
                patched.push(key);
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => refused = refused.or(Some(e)),
        }
    }
    match refused {
        Some(e) => Err(e.into()),
        None => Ok(patched),
    }
}
