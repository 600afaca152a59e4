//! The TCM-USER generic netlink family: device add/remove/reconfigure events.
//!
//! The kernel multicasts an event to the family's `config` group when a user
//! backstore is enabled (ADDED_DEVICE), removed (REMOVED_DEVICE) or changed
//! (RECONFIG_DEVICE: size, write cache, dev_config). It waits for a matching
//! `*_DONE` reply only when some process switched replies on host-wide
//! (SET_FEATURES) *and* the device's `nl_reply_supported` is positive; wasmtap
//! never switches replies on, and replies only for devices that ask for it
//! (see [`needs_reply`]). Joining the group needs CAP_NET_ADMIN.

use std::path::Path;

use neli::attr::Attribute;
use neli::consts::nl::NlmF;
use neli::consts::socket::NlFamily;
use neli::genl::{AttrTypeBuilder, Genlmsghdr, GenlmsghdrBuilder, NlattrBuilder, NoUserHeader};
use neli::nl::{NlPayload, Nlmsghdr};
use neli::router::synchronous::{NlRouter, NlRouterReceiverHandle};
use neli::types::GenlBuffer;
use neli::utils::Groups;

/// Family name.
pub const FAMILY: &str = "TCM-USER";
/// Multicast group for device events.
pub const GROUP: &str = "config";
/// Family version the kernel registers.
pub const VERSION: u8 = 2;

/// `enum tcmu_genl_cmd`.
pub mod cmd {
    /// A device was enabled.
    pub const ADDED_DEVICE: u8 = 1;
    /// A device is being removed.
    pub const REMOVED_DEVICE: u8 = 2;
    /// A device's configuration changed.
    pub const RECONFIG_DEVICE: u8 = 3;
    /// Reply to ADDED_DEVICE.
    pub const ADDED_DEVICE_DONE: u8 = 4;
    /// Reply to REMOVED_DEVICE.
    pub const REMOVED_DEVICE_DONE: u8 = 5;
    /// Reply to RECONFIG_DEVICE.
    pub const RECONFIG_DEVICE_DONE: u8 = 6;
    /// Switch kernel-waits-for-reply on or off (host-wide; never sent by wasmtap).
    pub const SET_FEATURES: u8 = 7;
}

/// `enum tcmu_genl_attr`.
pub mod attr {
    /// UIO device name (string).
    pub const DEVICE: u16 = 1;
    /// UIO minor (u32).
    pub const MINOR: u16 = 2;
    /// dev_config (string, RECONFIG).
    pub const DEV_CFG: u16 = 4;
    /// Device size (u64, RECONFIG).
    pub const DEV_SIZE: u16 = 5;
    /// Write cache (u8, RECONFIG).
    pub const WRITECACHE: u16 = 6;
    /// Status of a *_DONE reply (s32).
    pub const CMD_STATUS: u16 = 7;
    /// Device id to correlate replies (u32).
    pub const DEVICE_ID: u16 = 8;
}

/// What happened to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// ADDED_DEVICE.
    Added,
    /// REMOVED_DEVICE.
    Removed,
    /// RECONFIG_DEVICE.
    Reconfig,
}

/// One device event from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEvent {
    /// What happened.
    pub kind: EventKind,
    /// UIO name (`tcm-user/<hba>/<dev>/<cfg>`), if sent.
    pub uio_name: Option<String>,
    /// UIO minor (`uio<minor>`), if sent.
    pub minor: Option<u32>,
    /// Device id for the reply, if sent.
    pub device_id: Option<u32>,
    /// New size (RECONFIG).
    pub dev_size: Option<u64>,
    /// New write-cache setting (RECONFIG).
    pub write_cache: Option<bool>,
    /// New dev_config (RECONFIG).
    pub dev_config: Option<String>,
}

impl DeviceEvent {
    /// The `uioN` node this event is about, if the kernel said.
    pub fn uio(&self) -> Option<String> {
        self.minor.map(|m| format!("uio{m}"))
    }
}

/// Netlink failures, with what was being attempted.
#[derive(Debug, thiserror::Error)]
#[error("TCM-USER netlink: {what}: {detail}")]
pub struct NetlinkError {
    /// What was being done.
    pub what: &'static str,
    /// The underlying error.
    pub detail: String,
}

fn err(what: &'static str) -> impl FnOnce(String) -> NetlinkError {
    move |detail| NetlinkError { what, detail }
}

type Msg = Nlmsghdr<u16, Genlmsghdr<u8, u16>>;

/// The receiving half of a subscription: blocks for events.
pub struct Events {
    events: NlRouterReceiverHandle<u16, Genlmsghdr<u8, u16>>,
    family: u16,
}

/// The sending half: `*_DONE` replies.
pub struct Replier {
    router: NlRouter,
    family: u16,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("family", &self.family)
            .finish()
    }
}

impl std::fmt::Debug for Replier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replier")
            .field("family", &self.family)
            .finish()
    }
}

/// Resolve the family and join its `config` group. Fails when
/// target_core_user is not loaded or without CAP_NET_ADMIN.
pub fn subscribe() -> Result<(Events, Replier), NetlinkError> {
    {
        let (router, events) = NlRouter::connect(NlFamily::Generic, None, Groups::empty())
            .map_err(|e| err("connect")(e.to_string()))?;
        let family = router
            .resolve_genl_family(FAMILY)
            .map_err(|e| err("resolve family (is target_core_user loaded?)")(e.to_string()))?;
        let group = router
            .resolve_nl_mcast_group(FAMILY, GROUP)
            .map_err(|e| err("resolve multicast group")(e.to_string()))?;
        router
            .add_mcast_membership(Groups::new_groups(&[group]))
            .map_err(|e| err("join multicast group (needs CAP_NET_ADMIN)")(e.to_string()))?;
        Ok((Events { events, family }, Replier { router, family }))
    }
}

impl Events {
    /// Block until the next device event. `None` when the socket closed.
    pub fn next_event(&mut self) -> Option<Result<DeviceEvent, NetlinkError>> {
        loop {
            let msg: Msg = match self.events.next_typed::<u16, Genlmsghdr<u8, u16>>()? {
                Ok(m) => m,
                Err(e) => return Some(Err(err("receive")(e.to_string()))),
            };
            if *msg.nl_type() != self.family {
                continue;
            }
            if let Some(ev) = parse(&msg) {
                return Some(Ok(ev));
            }
        }
    }
}

impl Replier {
    /// Send the `*_DONE` reply for `ev` with `status` (0 or a negative errno).
    pub fn reply(&self, ev: &DeviceEvent, status: i32) -> Result<(), NetlinkError> {
        let done = match ev.kind {
            EventKind::Added => cmd::ADDED_DEVICE_DONE,
            EventKind::Removed => cmd::REMOVED_DEVICE_DONE,
            EventKind::Reconfig => cmd::RECONFIG_DEVICE_DONE,
        };
        let Some(id) = ev.device_id else {
            return Err(err("reply")("event carried no device id".into()));
        };
        let attrs = [
            (attr::CMD_STATUS, status.to_ne_bytes().to_vec()),
            (attr::DEVICE_ID, id.to_ne_bytes().to_vec()),
        ]
        .into_iter()
        .map(|(t, payload)| {
            NlattrBuilder::default()
                .nla_type(
                    AttrTypeBuilder::default()
                        .nla_type(t)
                        .build()
                        .map_err(|e| e.to_string())?,
                )
                .nla_payload(payload)
                .build()
                .map_err(|e| e.to_string())
        })
        .collect::<Result<GenlBuffer<u16, _>, String>>()
        .map_err(err("build reply"))?;
        let genl = GenlmsghdrBuilder::<u8, u16, NoUserHeader>::default()
            .cmd(done)
            .version(VERSION)
            .attrs(attrs)
            .build()
            .map_err(|e| err("build reply")(e.to_string()))?;
        let recv = self
            .router
            .send::<u16, Genlmsghdr<u8, u16>, u16, Genlmsghdr<u8, u16>>(
                self.family,
                NlmF::ACK,
                NlPayload::Payload(genl),
            )
            .map_err(|e| err("send reply")(e.to_string()))?;
        for m in recv {
            m.map_err(|e| err("reply refused")(e.to_string()))?;
        }
        Ok(())
    }
}

fn parse(msg: &Msg) -> Option<DeviceEvent> {
    let NlPayload::Payload(p) = msg.nl_payload() else {
        return None;
    };
    let kind = match *p.cmd() {
        cmd::ADDED_DEVICE => EventKind::Added,
        cmd::REMOVED_DEVICE => EventKind::Removed,
        cmd::RECONFIG_DEVICE => EventKind::Reconfig,
        _ => return None,
    };
    let mut ev = DeviceEvent {
        kind,
        uio_name: None,
        minor: None,
        device_id: None,
        dev_size: None,
        write_cache: None,
        dev_config: None,
    };
    for a in p.attrs().get_attr_handle().iter() {
        match *a.nla_type().nla_type() {
            attr::DEVICE => ev.uio_name = a.get_payload_as_with_len::<String>().ok(),
            attr::MINOR => ev.minor = a.get_payload_as::<u32>().ok(),
            attr::DEVICE_ID => ev.device_id = a.get_payload_as::<u32>().ok(),
            attr::DEV_SIZE => ev.dev_size = a.get_payload_as::<u64>().ok(),
            attr::WRITECACHE => ev.write_cache = a.get_payload_as::<u8>().ok().map(|v| v != 0),
            attr::DEV_CFG => ev.dev_config = a.get_payload_as_with_len::<String>().ok(),
            _ => {}
        }
    }
    Some(ev)
}

/// Whether the kernel waits for our `*_DONE` reply for a device: only if its
/// `attrib/nl_reply_supported` is positive (and replies are on host-wide,
/// which we cannot see; replying when nobody waits is harmless).
pub fn needs_reply(backstore_dir: &Path) -> bool {
    std::fs::read_to_string(backstore_dir.join("attrib/nl_reply_supported"))
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .is_some_and(|v| v > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_reply_only_for_positive_nl_reply_supported() {
        let dir = std::env::temp_dir().join(format!("wasmtap-nl-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("attrib")).unwrap();
        for (v, want) in [("1\n", true), ("0\n", false), ("-1\n", false), ("x", false)] {
            std::fs::write(dir.join("attrib/nl_reply_supported"), v).unwrap();
            assert_eq!(needs_reply(&dir), want, "nl_reply_supported={v:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!needs_reply(&dir));
    }

    #[test]
    fn event_names_its_uio_node() {
        let ev = DeviceEvent {
            kind: EventKind::Added,
            uio_name: Some("tcm-user/0/d/wasmtap".into()),
            minor: Some(3),
            device_id: Some(7),
            dev_size: None,
            write_cache: None,
            dev_config: None,
        };
        assert_eq!(ev.uio().as_deref(), Some("uio3"));
    }
}
