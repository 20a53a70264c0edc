//! Whether each device's copy of the model still works, judged by its calls.
//!
//! A GPU that has failed (fallen off the bus, or a CUDA context an illegal access has spoilt)
//! fails every call from then on, in a fraction of the time a call takes. Left alone, it would
//! take more than its share of the queue and fail every group it takes. So a device whose model
//! fails [`SICK_AFTER`] calls in a row stops taking work, and the other devices take it. The
//! last working device is never retired: when it is sick too, `/healthz` fails, so that
//! Kubernetes restarts the pod. Meanwhile the replica takes no new jobs or shared groups
//! (`broker`), and the jobs it holds, whose groups mostly fail, go back to the queue
//! (`model_failing` in the coordinator) for a working replica. A call that succeeds (an in-flight
//! group on a device that recovered) ends it all. A failure of one image (a file that cannot be
//! read back) says nothing of the device and is not counted.

use std::sync::{Arc, Mutex};

use super::metrics::Metrics;
use super::Health;

/// Model failures in a row after which a device is taken as broken. Enough that a group or two
/// the model cannot answer (a prompt it chokes on) does not retire a working GPU.
pub const SICK_AFTER: u32 = 5;

pub struct DeviceHealth {
    devices: Mutex<Vec<Device>>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

struct Device {
    name: String,
    failures_in_a_row: u32,
    retired: bool,
}

impl DeviceHealth {
    /// Every device up, named as in the metrics' `device` label.
    pub fn new(names: Vec<String>, health: Arc<Health>, metrics: Arc<Metrics>) -> Self {
        for name in &names {
            metrics.inference_device_up.with_label_values(&[name]).set(1);
        }
        let devices = names
            .into_iter()
            .map(|name| Device {
                name,
                failures_in_a_row: 0,
                retired: false,
            })
            .collect();
        Self {
            devices: Mutex::new(devices),
            health,
            metrics,
        }
    }

    /// True once device `device` (an index) has stopped taking work.
    pub fn retired(&self, device: usize) -> bool {
        self.lock()[device].retired
    }

    /// Record a call on device `device`: one that the model answered (`None`), or one that
    /// failed in the model (`Some(reason)`).
    pub fn record(&self, device: usize, model_failure: Option<&str>) {
        let mut devices = self.lock();
        let Some(reason) = model_failure else {
            devices[device].failures_in_a_row = 0;
            self.health.set_model_broken(false);
            return;
        };
        devices[device].failures_in_a_row += 1;
        if devices[device].failures_in_a_row != SICK_AFTER {
            return;
        }
        let name = devices[device].name.clone();
        let others_working = devices.iter().enumerate().any(|(i, d)| i != device && !d.retired);
        if others_working {
            devices[device].retired = true;
            self.metrics.inference_device_up.with_label_values(&[&name]).set(0);
            tracing::error!(
                device = %name,
                error = reason,
                "the model failed {SICK_AFTER} times in a row on this device; it takes no more work"
            );
        } else {
            self.health.set_model_broken(true);
            tracing::error!(
                device = %name,
                error = reason,
                "the model failed {SICK_AFTER} times in a row on the last working device; /healthz fails"
            );
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Device>> {
        self.devices.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devices(n: usize) -> (DeviceHealth, Arc<Health>, Arc<Metrics>) {
        let (health, metrics) = (Arc::new(Health::default()), Arc::new(Metrics::new().unwrap()));
        let names = (0..n).map(|i| format!("cuda:{i}")).collect();
        (
            DeviceHealth::new(names, health.clone(), metrics.clone()),
            health,
            metrics,
        )
    }

    fn fail(devices: &DeviceHealth, device: usize, times: u32) {
        for _ in 0..times {
            devices.record(device, Some("CUDA_ERROR_ILLEGAL_ADDRESS"));
        }
    }

    #[test]
    fn a_device_failing_in_a_row_is_retired_while_others_work() {
        let (devices, health, metrics) = devices(2);
        fail(&devices, 0, SICK_AFTER - 1);
        assert!(!devices.retired(0));
        fail(&devices, 0, 1);
        assert!(devices.retired(0) && !devices.retired(1));
        assert!(health.alive());
        let text = metrics.render();
        for line in [
            "qrank_inference_device_up{device=\"cuda:0\"} 0",
            "qrank_inference_device_up{device=\"cuda:1\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn an_answer_breaks_the_run_of_failures() {
        let (devices, _, _) = devices(2);
        fail(&devices, 0, SICK_AFTER - 1);
        devices.record(0, None);
        fail(&devices, 0, SICK_AFTER - 1);
        assert!(!devices.retired(0));
    }

    #[test]
    fn the_last_working_device_is_kept_and_the_process_reported_broken() {
        let (devices, health, _) = devices(2);
        fail(&devices, 1, SICK_AFTER);
        fail(&devices, 0, SICK_AFTER);
        assert!(!devices.retired(0), "the last device must keep taking work");
        assert!(!health.alive());
        // It came back: the process is well again.
        devices.record(0, None);
        assert!(health.alive());
    }
}
