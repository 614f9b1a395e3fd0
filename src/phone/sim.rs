//! Many phones at once (`ucm phone sim`): which devices to run, their addresses, and bringing
//! them up concurrently.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::device::{Phone, PhoneError, PhoneOptions, HTTP_TIMEOUT};
use super::http as client;

/// Phones brought up at the same time.
pub const START_CONCURRENCY: usize = 32;
/// How long a phone may take to register all its lines.
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(15);

/// The first `count` devices of the TFTP server's `ConfigFileCacheList.txt`, leaving out
/// those in `except` (devices something else runs).
pub async fn device_list(
    tftp: &str,
    count: usize,
    except: &[String],
) -> Result<Vec<String>, String> {
    let url = format!("http://{tftp}/ConfigFileCacheList.txt");
    let r = client::get(&url, None, &[], HTTP_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("GET {url}: HTTP {}", r.status));
    }
    let names: Vec<String> = r
        .text()
        .lines()
        .filter_map(|l| l.trim().strip_suffix(".cnf.xml"))
        .filter(|n| super::device::mac_of(n).is_some())
        .filter(|n| !except.iter().any(|e| e.eq_ignore_ascii_case(n)))
        .map(str::to_string)
        .take(count)
        .collect();
    if names.len() < count {
        return Err(format!(
            "{url} lists {} phones, {count} asked for",
            names.len()
        ));
    }
    Ok(names)
}

/// The address of the `index`th phone counting from `first` (127.0.0.10, 127.0.0.11, ...).
pub fn nth_ip(first: Ipv4Addr, index: usize) -> Option<Ipv4Addr> {
    let n = u32::from(first).checked_add(u32::try_from(index).ok()?)?;
    let ip = Ipv4Addr::from(n);
    // Loopback phones stay inside 127.0.0.0/8.
    (!first.is_loopback() || ip.is_loopback()).then_some(ip)
}

/// Starts one phone per device, `template` giving everything but the name and address, and
/// waits for each to register its lines. On the first failure the phones already up are shut
/// down and the error returned.
pub async fn start_all(
    template: &PhoneOptions,
    devices: &[String],
    first_ip: Ipv4Addr,
) -> Result<Vec<Phone>, PhoneError> {
    let sem = Arc::new(Semaphore::new(START_CONCURRENCY));
    let mut set = JoinSet::new();
    let mut ips = Vec::with_capacity(devices.len());
    let mut next = 0usize;
    for d in devices {
        // Skip x.x.x.255 and x.x.x.0 so every phone has an ordinary host address.
        let ip = loop {
            let Some(ip) = nth_ip(first_ip, next) else {
                return Err(PhoneError::Setup {
                    device: d.clone(),
                    reason: format!("no loopback address left after {first_ip}"),
                });
            };
            next += 1;
            if ip.octets()[3] != 0 && ip.octets()[3] != 255 {
                break ip;
            }
            if next > devices.len() * 2 + 4 {
                return Err(PhoneError::Setup {
                    device: d.clone(),
                    reason: "no loopback address left".into(),
                });
            }
        };
        ips.push(ip);
    }
    for (i, (d, ip)) in devices.iter().zip(ips).enumerate() {
        let mut opts = template.clone();
        opts.device = d.clone();
        opts.ip = ip;
        let sem = sem.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let phone = Phone::start(opts).await?;
            if let Err(e) = phone.wait_registered(REGISTER_TIMEOUT).await {
                phone.shutdown(Duration::from_secs(1)).await;
                return Err(e);
            }
            Ok::<_, PhoneError>((i, phone))
        });
    }
    let mut up: Vec<(usize, Phone)> = Vec::with_capacity(devices.len());
    let mut failure = None;
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(p)) => up.push(p),
            Ok(Err(e)) => {
                if failure.is_none() {
                    failure = Some(e);
                    set.abort_all();
                }
            }
            Err(e) if e.is_cancelled() => {}
            Err(e) => {
                if failure.is_none() {
                    failure = Some(PhoneError::Setup {
                        device: "?".into(),
                        reason: format!("start task failed: {e}"),
                    });
                    set.abort_all();
                }
            }
        }
    }
    if let Some(e) = failure {
        shutdown_all(
            up.into_iter().map(|(_, p)| p).collect(),
            Duration::from_secs(2),
        )
        .await;
        return Err(e);
    }
    up.sort_by_key(|(i, _)| *i);
    Ok(up.into_iter().map(|(_, p)| p).collect())
}

/// Shuts every phone down concurrently (lines unregistered within `grace`).
pub async fn shutdown_all(phones: Vec<Phone>, grace: Duration) {
    let mut set = JoinSet::new();
    for p in phones {
        set.spawn(p.shutdown(grace));
    }
    while set.join_next().await.is_some() {}
}

/// The ready line's entry for one phone.
pub fn ready_entry(p: &Phone) -> serde_json::Value {
    serde_json::json!({
        "device": p.device(),
        "ip": IpAddr::V4(p.ip()).to_string(),
        "http": p.http_addr().to_string(),
        "sip": p.sip_addr().to_string(),
        "lines": p.lines(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let first = Ipv4Addr::new(127, 0, 0, 10);
        assert_eq!(nth_ip(first, 0), Some(Ipv4Addr::new(127, 0, 0, 10)));
        assert_eq!(nth_ip(first, 300), Some(Ipv4Addr::new(127, 0, 1, 54)));
        assert_eq!(nth_ip(Ipv4Addr::new(127, 255, 255, 250), 10), None);
    }
}
