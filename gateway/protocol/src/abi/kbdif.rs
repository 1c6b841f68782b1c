//! `kbdif.h`.

use super::{c_struct, c_union, defines, push_type_entries, LayoutValue};

pub const XENKBD_TYPE_MOTION: u8 = 1;
pub const XENKBD_TYPE_RESERVED: u8 = 2;
pub const XENKBD_TYPE_KEY: u8 = 3;
pub const XENKBD_TYPE_POS: u8 = 4;
pub const XENKBD_TYPE_MTOUCH: u8 = 5;

pub const XENKBD_MT_EV_DOWN: u8 = 0;
pub const XENKBD_MT_EV_UP: u8 = 1;
pub const XENKBD_MT_EV_MOTION: u8 = 2;
pub const XENKBD_MT_EV_SYN: u8 = 3;
pub const XENKBD_MT_EV_SHAPE: u8 = 4;
pub const XENKBD_MT_EV_ORIENT: u8 = 5;

pub const XENKBD_DRIVER_NAME: &str = "vkbd";
pub const XENKBD_FIELD_FEAT_DSBL_KEYBRD: &str = "feature-disable-keyboard";
pub const XENKBD_FIELD_FEAT_DSBL_POINTER: &str = "feature-disable-pointer";
pub const XENKBD_FIELD_FEAT_ABS_POINTER: &str = "feature-abs-pointer";
pub const XENKBD_FIELD_FEAT_RAW_POINTER: &str = "feature-raw-pointer";
pub const XENKBD_FIELD_FEAT_MTOUCH: &str = "feature-multi-touch";
pub const XENKBD_FIELD_REQ_ABS_POINTER: &str = "request-abs-pointer";
pub const XENKBD_FIELD_REQ_RAW_POINTER: &str = "request-raw-pointer";
pub const XENKBD_FIELD_REQ_MTOUCH: &str = "request-multi-touch";
pub const XENKBD_FIELD_RING_GREF: &str = "page-gref";
pub const XENKBD_FIELD_EVT_CHANNEL: &str = "event-channel";
pub const XENKBD_FIELD_WIDTH: &str = "width";
pub const XENKBD_FIELD_HEIGHT: &str = "height";
pub const XENKBD_FIELD_MT_WIDTH: &str = "multi-touch-width";
pub const XENKBD_FIELD_MT_HEIGHT: &str = "multi-touch-height";
pub const XENKBD_FIELD_MT_NUM_CONTACTS: &str = "multi-touch-num-contacts";
pub const XENKBD_FIELD_UNIQUE_ID: &str = "unique-id";
/// Obsolete (a PFN, meaningless to a backend that maps grants).
pub const XENKBD_FIELD_RING_REF: &str = "page-ref";

pub const XENKBD_IN_EVENT_SIZE: usize = 40;
pub const XENKBD_OUT_EVENT_SIZE: usize = 40;
pub const XENKBD_IN_RING_SIZE: usize = 2048;
pub const XENKBD_IN_RING_LEN: usize = XENKBD_IN_RING_SIZE / XENKBD_IN_EVENT_SIZE;
pub const XENKBD_IN_RING_OFFS: usize = 1024;
pub const XENKBD_OUT_RING_SIZE: usize = 1024;
pub const XENKBD_OUT_RING_LEN: usize = XENKBD_OUT_RING_SIZE / XENKBD_OUT_EVENT_SIZE;
pub const XENKBD_OUT_RING_OFFS: usize = XENKBD_IN_RING_OFFS + XENKBD_IN_RING_SIZE;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xenkbd_motion {
    pub r#type: u8,
    pub rel_x: i32,
    pub rel_y: i32,
    pub rel_z: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xenkbd_key {
    pub r#type: u8,
    pub pressed: u8,
    pub keycode: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xenkbd_position {
    pub r#type: u8,
    pub abs_x: i32,
    pub abs_y: i32,
    pub rel_z: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xenkbd_mtouch_pos {
    pub abs_x: i32,
    pub abs_y: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xenkbd_mtouch_shape {
    pub major: u32,
    pub minor: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub union xenkbd_mtouch_u {
    pub pos: xenkbd_mtouch_pos,
    pub shape: xenkbd_mtouch_shape,
    pub orientation: i16,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xenkbd_mtouch {
    pub r#type: u8,
    pub event_type: u8,
    pub contact_id: u8,
    pub reserved: [u8; 5],
    pub u: xenkbd_mtouch_u,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub union xenkbd_in_event {
    pub r#type: u8,
    pub motion: xenkbd_motion,
    pub key: xenkbd_key,
    pub pos: xenkbd_position,
    pub mtouch: xenkbd_mtouch,
    pub pad: [u8; XENKBD_IN_EVENT_SIZE],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub union xenkbd_out_event {
    pub r#type: u8,
    pub pad: [u8; XENKBD_OUT_EVENT_SIZE],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xenkbd_page {
    pub in_cons: u32,
    pub in_prod: u32,
    pub out_cons: u32,
    pub out_prod: u32,
}

c_struct!(xenkbd_motion, "struct xenkbd_motion", { r#type, rel_x, rel_y, rel_z });
c_struct!(xenkbd_key, "struct xenkbd_key", { r#type, pressed, keycode });
c_struct!(xenkbd_position, "struct xenkbd_position", { r#type, abs_x, abs_y, rel_z });
c_struct!(xenkbd_mtouch_pos, "", { abs_x, abs_y });
c_struct!(xenkbd_mtouch_shape, "", { major, minor });
c_union!(xenkbd_mtouch_u, "", {
    pos: xenkbd_mtouch_pos => inline,
    shape: xenkbd_mtouch_shape => inline,
    orientation: i16,
});
c_struct!(xenkbd_mtouch, "struct xenkbd_mtouch", {
    r#type, event_type, contact_id, reserved, u => xenkbd_mtouch_u,
});
c_union!(xenkbd_in_event, "union xenkbd_in_event", {
    r#type: u8,
    motion: xenkbd_motion,
    key: xenkbd_key,
    pos: xenkbd_position,
    mtouch: xenkbd_mtouch,
    pad: [u8; XENKBD_IN_EVENT_SIZE],
});
c_union!(xenkbd_out_event, "union xenkbd_out_event", {
    r#type: u8,
    pad: [u8; XENKBD_OUT_EVENT_SIZE],
});
c_struct!(xenkbd_page, "struct xenkbd_page", { in_cons, in_prod, out_cons, out_prod });

pub(crate) fn push_entries(out: &mut Vec<(String, LayoutValue)>) {
    push_type_entries::<xenkbd_motion>(out);
    push_type_entries::<xenkbd_key>(out);
    push_type_entries::<xenkbd_position>(out);
    push_type_entries::<xenkbd_mtouch>(out);
    push_type_entries::<xenkbd_in_event>(out);
    push_type_entries::<xenkbd_out_event>(out);
    push_type_entries::<xenkbd_page>(out);
    defines!(
        out,
        XENKBD_TYPE_MOTION,
        XENKBD_TYPE_RESERVED,
        XENKBD_TYPE_KEY,
        XENKBD_TYPE_POS,
        XENKBD_TYPE_MTOUCH,
        XENKBD_MT_EV_DOWN,
        XENKBD_MT_EV_UP,
        XENKBD_MT_EV_MOTION,
        XENKBD_MT_EV_SYN,
        XENKBD_MT_EV_SHAPE,
        XENKBD_MT_EV_ORIENT,
        XENKBD_DRIVER_NAME,
        XENKBD_FIELD_FEAT_DSBL_KEYBRD,
        XENKBD_FIELD_FEAT_DSBL_POINTER,
        XENKBD_FIELD_FEAT_ABS_POINTER,
        XENKBD_FIELD_FEAT_RAW_POINTER,
        XENKBD_FIELD_FEAT_MTOUCH,
        XENKBD_FIELD_REQ_ABS_POINTER,
        XENKBD_FIELD_REQ_RAW_POINTER,
        XENKBD_FIELD_REQ_MTOUCH,
        XENKBD_FIELD_RING_GREF,
        XENKBD_FIELD_EVT_CHANNEL,
        XENKBD_FIELD_WIDTH,
        XENKBD_FIELD_HEIGHT,
        XENKBD_FIELD_MT_WIDTH,
        XENKBD_FIELD_MT_HEIGHT,
        XENKBD_FIELD_MT_NUM_CONTACTS,
        XENKBD_FIELD_UNIQUE_ID,
        XENKBD_FIELD_RING_REF,
        XENKBD_IN_EVENT_SIZE,
        XENKBD_OUT_EVENT_SIZE,
        XENKBD_IN_RING_SIZE,
        XENKBD_IN_RING_LEN,
        XENKBD_IN_RING_OFFS,
        XENKBD_OUT_RING_SIZE,
        XENKBD_OUT_RING_LEN,
        XENKBD_OUT_RING_OFFS,
    );
}
