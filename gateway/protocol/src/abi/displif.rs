//! `displif.h` (protocol version 2).

use super::ring::grant_ref_t;
use super::{c_struct, c_union, defines, push_type_entries, LayoutValue};

pub const XENDISPL_PROTOCOL_VERSION: &str = "2";
pub const XENDISPL_PROTOCOL_VERSION_INT: u32 = 2;

pub const XENDISPL_OP_DBUF_CREATE: u8 = 0x10;
pub const XENDISPL_OP_DBUF_DESTROY: u8 = 0x11;
pub const XENDISPL_OP_FB_ATTACH: u8 = 0x12;
pub const XENDISPL_OP_FB_DETACH: u8 = 0x13;
pub const XENDISPL_OP_SET_CONFIG: u8 = 0x14;
pub const XENDISPL_OP_PG_FLIP: u8 = 0x15;
pub const XENDISPL_OP_GET_EDID: u8 = 0x16;

pub const XENDISPL_EVT_PG_FLIP: u8 = 0x00;

pub const XENDISPL_DRIVER_NAME: &str = "vdispl";
pub const XENDISPL_LIST_SEPARATOR: &str = ",";
pub const XENDISPL_RESOLUTION_SEPARATOR: &str = "x";
pub const XENDISPL_FIELD_BE_VERSIONS: &str = "versions";
pub const XENDISPL_FIELD_FE_VERSION: &str = "version";
pub const XENDISPL_FIELD_REQ_RING_REF: &str = "req-ring-ref";
pub const XENDISPL_FIELD_REQ_CHANNEL: &str = "req-event-channel";
pub const XENDISPL_FIELD_EVT_RING_REF: &str = "evt-ring-ref";
pub const XENDISPL_FIELD_EVT_CHANNEL: &str = "evt-event-channel";
pub const XENDISPL_FIELD_RESOLUTION: &str = "resolution";
pub const XENDISPL_FIELD_BE_ALLOC: &str = "be-alloc";
pub const XENDISPL_FIELD_UNIQUE_ID: &str = "unique-id";

pub const XENDISPL_EDID_BLOCK_SIZE: u32 = 128;
pub const XENDISPL_EDID_BLOCK_COUNT: u32 = 256;
pub const XENDISPL_EDID_MAX_SIZE: u32 = XENDISPL_EDID_BLOCK_SIZE * XENDISPL_EDID_BLOCK_COUNT;

pub const XENDISPL_DBUF_FLG_REQ_ALLOC: u32 = 1 << 0;

pub const XENDISPL_EVENT_PAGE_SIZE: usize = 4096;
pub const XENDISPL_IN_RING_OFFS: usize = core::mem::size_of::<xendispl_event_page>();
pub const XENDISPL_IN_RING_SIZE: usize = XENDISPL_EVENT_PAGE_SIZE - XENDISPL_IN_RING_OFFS;
pub const XENDISPL_IN_RING_LEN: usize =
    XENDISPL_IN_RING_SIZE / core::mem::size_of::<xendispl_evt>();

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xendispl_dbuf_create_req {
    pub dbuf_cookie: u64,
    pub width: u32,
    pub height: u32,
    pub bpp: u32,
    pub buffer_sz: u32,
    pub flags: u32,
    pub gref_directory: grant_ref_t,
    pub data_ofs: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xendispl_page_directory {
    pub gref_dir_next_page: grant_ref_t,
    pub gref: [grant_ref_t; 1],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xendispl_dbuf_destroy_req {
    pub dbuf_cookie: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xendispl_fb_attach_req {
    pub dbuf_cookie: u64,
    pub fb_cookie: u64,
    pub width: u32,
    pub height: u32,
    pub pixel_format: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xendispl_fb_detach_req {
    pub fb_cookie: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xendispl_set_config_req {
    pub fb_cookie: u64,
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    pub bpp: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xendispl_page_flip_req {
    pub fb_cookie: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xendispl_get_edid_req {
    pub buffer_sz: u32,
    pub gref_directory: grant_ref_t,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xendispl_get_edid_resp {
    pub edid_sz: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xendispl_pg_flip_evt {
    pub fb_cookie: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub union xendispl_req_op {
    pub dbuf_create: xendispl_dbuf_create_req,
    pub dbuf_destroy: xendispl_dbuf_destroy_req,
    pub fb_attach: xendispl_fb_attach_req,
    pub fb_detach: xendispl_fb_detach_req,
    pub set_config: xendispl_set_config_req,
    pub pg_flip: xendispl_page_flip_req,
    pub get_edid: xendispl_get_edid_req,
    pub reserved: [u8; 56],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xendispl_req {
    pub id: u16,
    pub operation: u8,
    pub reserved: [u8; 5],
    pub op: xendispl_req_op,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub union xendispl_resp_op {
    pub get_edid: xendispl_get_edid_resp,
    pub reserved1: [u8; 56],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xendispl_resp {
    pub id: u16,
    pub operation: u8,
    pub reserved: u8,
    pub status: i32,
    pub op: xendispl_resp_op,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub union xendispl_evt_op {
    pub pg_flip: xendispl_pg_flip_evt,
    pub reserved: [u8; 56],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xendispl_evt {
    pub id: u16,
    pub r#type: u8,
    pub reserved: [u8; 5],
    pub op: xendispl_evt_op,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct xendispl_event_page {
    pub in_cons: u32,
    pub in_prod: u32,
    pub reserved: [u8; 56],
}

c_struct!(xendispl_dbuf_create_req, "struct xendispl_dbuf_create_req", {
    dbuf_cookie, width, height, bpp, buffer_sz, flags, gref_directory, data_ofs,
});
c_struct!(xendispl_page_directory, "struct xendispl_page_directory", { gref_dir_next_page, gref });
c_struct!(
    xendispl_dbuf_destroy_req,
    "struct xendispl_dbuf_destroy_req",
    { dbuf_cookie }
);
c_struct!(xendispl_fb_attach_req, "struct xendispl_fb_attach_req", {
    dbuf_cookie, fb_cookie, width, height, pixel_format,
});
c_struct!(xendispl_fb_detach_req, "struct xendispl_fb_detach_req", {
    fb_cookie
});
c_struct!(xendispl_set_config_req, "struct xendispl_set_config_req", {
    fb_cookie, x, y, width, height, bpp,
});
c_struct!(xendispl_page_flip_req, "struct xendispl_page_flip_req", {
    fb_cookie
});
c_struct!(xendispl_get_edid_req, "struct xendispl_get_edid_req", { buffer_sz, gref_directory });
c_struct!(xendispl_get_edid_resp, "struct xendispl_get_edid_resp", {
    edid_sz
});
c_struct!(xendispl_pg_flip_evt, "struct xendispl_pg_flip_evt", {
    fb_cookie
});
c_union!(xendispl_req_op, "", {
    dbuf_create: xendispl_dbuf_create_req,
    dbuf_destroy: xendispl_dbuf_destroy_req,
    fb_attach: xendispl_fb_attach_req,
    fb_detach: xendispl_fb_detach_req,
    set_config: xendispl_set_config_req,
    pg_flip: xendispl_page_flip_req,
    get_edid: xendispl_get_edid_req,
    reserved: [u8; 56],
});
c_struct!(xendispl_req, "struct xendispl_req", { id, operation, reserved, op => xendispl_req_op });
c_union!(xendispl_resp_op, "", { get_edid: xendispl_get_edid_resp, reserved1: [u8; 56] });
c_struct!(xendispl_resp, "struct xendispl_resp", {
    id, operation, reserved, status, op => xendispl_resp_op,
});
c_union!(xendispl_evt_op, "", { pg_flip: xendispl_pg_flip_evt, reserved: [u8; 56] });
c_struct!(xendispl_evt, "struct xendispl_evt", { id, r#type, reserved, op => xendispl_evt_op });
c_struct!(xendispl_event_page, "struct xendispl_event_page", { in_cons, in_prod, reserved });

pub(crate) fn push_entries(out: &mut Vec<(String, LayoutValue)>) {
    push_type_entries::<xendispl_dbuf_create_req>(out);
    push_type_entries::<xendispl_page_directory>(out);
    push_type_entries::<xendispl_dbuf_destroy_req>(out);
    push_type_entries::<xendispl_fb_attach_req>(out);
    push_type_entries::<xendispl_fb_detach_req>(out);
    push_type_entries::<xendispl_set_config_req>(out);
    push_type_entries::<xendispl_page_flip_req>(out);
    push_type_entries::<xendispl_get_edid_req>(out);
    push_type_entries::<xendispl_get_edid_resp>(out);
    push_type_entries::<xendispl_pg_flip_evt>(out);
    push_type_entries::<xendispl_req>(out);
    push_type_entries::<xendispl_resp>(out);
    push_type_entries::<xendispl_evt>(out);
    push_type_entries::<xendispl_event_page>(out);
    defines!(
        out,
        XENDISPL_PROTOCOL_VERSION,
        XENDISPL_PROTOCOL_VERSION_INT,
        XENDISPL_OP_DBUF_CREATE,
        XENDISPL_OP_DBUF_DESTROY,
        XENDISPL_OP_FB_ATTACH,
        XENDISPL_OP_FB_DETACH,
        XENDISPL_OP_SET_CONFIG,
        XENDISPL_OP_PG_FLIP,
        XENDISPL_OP_GET_EDID,
        XENDISPL_EVT_PG_FLIP,
        XENDISPL_DRIVER_NAME,
        XENDISPL_LIST_SEPARATOR,
        XENDISPL_RESOLUTION_SEPARATOR,
        XENDISPL_FIELD_BE_VERSIONS,
        XENDISPL_FIELD_FE_VERSION,
        XENDISPL_FIELD_REQ_RING_REF,
        XENDISPL_FIELD_REQ_CHANNEL,
        XENDISPL_FIELD_EVT_RING_REF,
        XENDISPL_FIELD_EVT_CHANNEL,
        XENDISPL_FIELD_RESOLUTION,
        XENDISPL_FIELD_BE_ALLOC,
        XENDISPL_FIELD_UNIQUE_ID,
        XENDISPL_EDID_BLOCK_SIZE,
        XENDISPL_EDID_BLOCK_COUNT,
        XENDISPL_EDID_MAX_SIZE,
        XENDISPL_DBUF_FLG_REQ_ALLOC,
        XENDISPL_EVENT_PAGE_SIZE,
        XENDISPL_IN_RING_OFFS,
        XENDISPL_IN_RING_SIZE,
        XENDISPL_IN_RING_LEN,
    );
}
